"""``dec-lightning``: pretrain, cluster, or run both stages from one YAML config.

The config has one ``encoder`` (and optionally one ``decoder``) shared by both stages, a ``data`` module, the
``pretrain`` stage (`AutoencoderPretraining` arguments), and the clustering stage as
``model`` with its ``trainer``. ``model`` is `DEC` unless it names another subclass of it
(``class_path``, or ``--model dec_lightning.modules.DKM``): both stages run the same way for
every module of the family, each with the callbacks of its own config. The pretraining trainer
reuses the trainer's hardware settings (accelerator, devices, strategy, precision); its length
is the pretraining schedule.

    dec-lightning run --config configs/digits.yaml
    dec-lightning run --config configs/digits_dkm.yaml                            # Deep k-Means
    dec-lightning pretrain --config configs/digits.yaml
    dec-lightning cluster --config configs/digits.yaml --model.pretrained PATH.ckpt
    dec-lightning cluster --config configs/digits.yaml --ckpt_path DEC.ckpt        # resume
    dec-lightning predict --config configs/digits.yaml --ckpt_path DEC.ckpt --output_dir DIR
    dec-lightning select-k --config configs/digits.yaml --k 5:15                  # choose K (DEC sec. 5.5)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_info

from dec_lightning.cli.common import DECLightningCLI, build_cli
from dec_lightning.cli.predict import run_predict
from dec_lightning.cli.select_k import run_select_k
from dec_lightning.data.validation import DECInputError, check_model_fits_data, require_file
from dec_lightning.modules import AutoencoderPretraining
from dec_lightning.modules.dec import load_checkpoint_file, load_encoder_weights

COMMANDS = {
    "pretrain": "train the autoencoder and save its checkpoint",
    "cluster": "run DEC (or --model DKM) from a pretrained encoder (--model.pretrained PATH)",
    "run": "pretrain, then cluster, in one process",
    "predict": "assign the config's data with a trained DEC checkpoint (--ckpt_path, --output_dir)",
    "select-k": "choose K by DEC's generalizability on held-out data (--k 5:15, --holdout 0.2)",
}


def _summary(cli: DECLightningCLI, seconds: float) -> str:
    name = getattr(cli.datamodule, "name", type(cli.datamodule).__name__)
    scores = " ".join(f"{k.upper()}={v:.3f}" for k, v in cli.model.scores.items())
    return f"{name}: {scores} time={seconds:.0f}s".replace(":  ", ": ")


def main(args: list[str] | None = None) -> None:
    """Console entry point: a user-fixable input error is printed as one line, not a traceback."""
    try:
        run_cli(args)
    except Exception as err:
        cause = _input_error(err)
        if cause is None:
            raise
        raise SystemExit(f"dec-lightning: error: {cause}") from None


def _input_error(err: BaseException | None) -> DECInputError | None:
    """The `DECInputError` behind ``err``: jsonargparse wraps errors raised while it instantiates classes."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, DECInputError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def validate_inputs(cli: DECLightningCLI, command: str) -> None:
    """Refuse bad input before anything is written (no empty ``version_N`` or checkpoint folders).

    Runs after the CLI is built and before any ``fit``, which is when the loggers and
    checkpoint callbacks create their folders. Checks, in this order:

    * the checkpoint to resume loads with ``weights_only=True`` (`load_checkpoint_file`): a
      file that pickles code is refused, never unpickled, whatever Lightning's loading does;
    * the data fits the encoder's input size and, when clustering, holds at least
      ``model.n_clusters`` samples (`check_model_fits_data`, the check `DEC.setup` runs). Only
      on local rank 0: under DDP Lightning prepares the data there first (downloads), and the
      other ranks run `DEC.setup`'s check after that;
    * the pretrained weights exist and fit the encoder (`load_encoder_weights`, as `DEC` does at fit).
    """
    if command == "cluster" and cli.config.ckpt_path:
        path = require_file(cli.config.ckpt_path, "DEC checkpoint to resume", "fix --ckpt_path")
        load_checkpoint_file(path)
    if cli.trainer.local_rank == 0:
        cli.datamodule.prepare_data()
        cli.datamodule.setup("fit")
        n_clusters = cli.model.n_clusters if command != "pretrain" else None
        check_model_fits_data(cli.model.encoder, cli.datamodule, n_clusters)
    if command == "cluster" and not cli.config.ckpt_path and cli.model.hparams.pretrained:
        # after the data checks, as in a fit; `DEC` loads them again when the fit starts
        load_encoder_weights(cli.model.encoder, cli.model.hparams.pretrained)
        if cli.model.decoder is not None:
            load_encoder_weights(cli.model.decoder, cli.model.hparams.pretrained, prefix="decoder")


def run_cli(args: list[str] | None = None) -> DECLightningCLI:
    """Parse ``[command, --config FILE, ...]`` and run it; returns the CLI so tests can inspect it."""
    argv = list(sys.argv[1:] if args is None else args)
    if not argv or argv[0] not in COMMANDS:
        usage = "\n".join(f"  {name:<9} {text}" for name, text in COMMANDS.items())
        sys.stderr.write(f"usage: dec-lightning {{{','.join(COMMANDS)}}} --config FILE [--key value ...]\n{usage}\n")
        raise SystemExit(0 if argv and argv[0] in ("-h", "--help") else 2)
    command, rest = argv[0], argv[1:]
    if command == "predict":
        return run_predict(rest)
    if command == "select-k":
        return run_select_k(rest)
    start = time.perf_counter()
    cli = build_cli(command, rest, save_config_kwargs={"overwrite": True})
    validate_inputs(cli, command)
    ckpt_path = cli.config.ckpt_path
    if ckpt_path and command != "cluster":
        raise SystemExit(f"--ckpt_path resumes clustering: use `dec-lightning cluster --ckpt_path {ckpt_path}`")
    if command in ("pretrain", "run"):
        pretraining: AutoencoderPretraining = cli.config_init["pretrain"]
        pretrainer = cli.pretrain_trainer()
        pretrainer.fit(pretraining, datamodule=cli.datamodule)
        cli.model.encoder.load_state_dict(pretraining.encoder.state_dict())
        if cli.model.decoder is not None:  # IDEC: its reconstruction term starts from the pretrained decoder
            cli.model.decoder.load_state_dict(pretraining.decoder.state_dict())
        checkpoint = pretrainer.checkpoint_callback.best_model_path if pretrainer.checkpoint_callback else ""
        if checkpoint:
            rank_zero_info(f"pretrained autoencoder: {checkpoint}")
    if command == "cluster" and not (cli.model.hparams.pretrained or ckpt_path):
        raise SystemExit(
            "dec-lightning cluster needs a pretrained encoder (--model.pretrained PATH.ckpt) "
            "or a DEC checkpoint to resume (--ckpt_path PATH.ckpt)"
        )
    if command in ("cluster", "run"):
        cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt_path)
        if cli.trainer.is_global_zero:
            if cli.trainer.checkpoint_callback and cli.trainer.checkpoint_callback.best_model_path:
                print(f"{type(cli.model).__name__} checkpoint: {Path(cli.trainer.checkpoint_callback.best_model_path)}")
            print(_summary(cli, time.perf_counter() - start))
    return cli
