"""``dec-lightning``: pretrain, cluster, or run both stages from one YAML config.

The config has one ``encoder`` (and optionally one ``decoder``) shared by both stages, a ``data`` module, the
``pretrain`` stage (`AutoencoderPretraining` arguments), and the clustering stage as
``model`` (`DEC` arguments) with its ``trainer``. The pretraining trainer reuses the
trainer's hardware settings (accelerator, devices, strategy, precision); its length is
the pretraining schedule.

    dec-lightning run --config configs/digits.yaml
    dec-lightning pretrain --config configs/digits.yaml
    dec-lightning cluster --config configs/digits.yaml --model.pretrained PATH.ckpt
    dec-lightning predict --config configs/digits.yaml --ckpt_path DEC.ckpt --output_dir DIR
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import lightning as L
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from dec_lightning.data.validation import DECInputError
from dec_lightning.modules import DEC, AutoencoderPretraining

COMMANDS = {
    "pretrain": "train the autoencoder and save its checkpoint",
    "cluster": "run DEC from a pretrained encoder (--model.pretrained PATH)",
    "run": "pretrain, then cluster, in one process",
    "predict": "assign the config's data with a trained DEC checkpoint (--ckpt_path, --output_dir)",
}


class DECLightningCLI(LightningCLI):
    """LightningCLI whose config also holds the shared encoder and the pretraining stage."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_subclass_arguments(nn.Module, "encoder", required=True)
        # optional: MLP encoders default to their mirror; IDEC (model.reconstruction_weight > 0) keeps it
        parser.add_subclass_arguments(nn.Module, "decoder", required=False)
        parser.add_class_arguments(AutoencoderPretraining, "pretrain")
        # Both stages build the encoder (and decoder) from the same config, so each checkpoint records
        # it and reloads alone (`DEC.load_from_checkpoint(path)`); `run` copies the pretrained weights.
        for name in ("encoder", "decoder"):
            parser.link_arguments(name, f"pretrain.{name}")
            parser.link_arguments(name, f"model.{name}")

    def pretrain_trainer(self) -> L.Trainer:
        """A trainer with the clustering trainer's hardware settings and the pretraining length."""
        module: AutoencoderPretraining = self.config_init["pretrain"]
        logger = TensorBoardLogger(save_dir=self.log_root(), name="pretrain")
        return self.instantiate_trainer(max_steps=module.total_steps, max_epochs=-1, callbacks=[], logger=logger)

    def log_root(self) -> str:
        logger = self.trainer.logger
        return logger.save_dir if logger is not None and logger.save_dir else self.trainer.default_root_dir


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


def run_cli(args: list[str] | None = None) -> DECLightningCLI:
    """Parse ``[command, --config FILE, ...]`` and run it; returns the CLI so tests can inspect it."""
    argv = list(sys.argv[1:] if args is None else args)
    if not argv or argv[0] not in COMMANDS:
        usage = "\n".join(f"  {name:<9} {text}" for name, text in COMMANDS.items())
        sys.stderr.write(f"usage: dec-lightning {{{','.join(COMMANDS)}}} --config FILE [--key value ...]\n{usage}\n")
        raise SystemExit(0 if argv and argv[0] in ("-h", "--help") else 2)
    command, rest = argv[0], argv[1:]
    if command == "predict":
        from dec_lightning.cli.predict import run_predict  # imports this module

        return run_predict(rest)
    start = time.perf_counter()
    with warnings.catch_warnings():
        # the command word is ours, so sys.argv and args differ by design
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        cli = DECLightningCLI(
            DEC,
            L.LightningDataModule,
            subclass_mode_data=True,
            run=False,
            args=rest,
            seed_everything_default=0,
            auto_configure_optimizers=False,  # the modules take their optimizer as an argument
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"prog": f"dec-lightning {command}"},
        )
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
    if command == "cluster" and not cli.model.hparams.pretrained:
        raise SystemExit("dec-lightning cluster needs a pretrained encoder: --model.pretrained PATH.ckpt")
    if command in ("cluster", "run"):
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        if cli.trainer.is_global_zero:
            if cli.trainer.checkpoint_callback and cli.trainer.checkpoint_callback.best_model_path:
                print(f"DEC checkpoint: {Path(cli.trainer.checkpoint_callback.best_model_path)}")
            print(_summary(cli, time.perf_counter() - start))
    return cli
