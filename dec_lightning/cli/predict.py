"""``dec-lightning predict``: assign new data to the clusters of a trained DEC checkpoint.

    dec-lightning predict --config configs/digits.yaml --ckpt_path DEC.ckpt --output_dir DIR
    dec-lightning predict --config CFG --ckpt_path DEC.ckpt --data ArrayDataModule --data.data new.csv

The data comes from the config's ``data`` section, so any DataModule works; the model is
built from the config (``encoder``, ``model``) and its weights and centres are loaded
from the checkpoint. Writes, atomically and durably (`dec_lightning.files.atomic_write_all`:
temporary files in the same folder, fsynced, then `os.replace`d, so a reader never sees a
half-written file):

* ``assignments.csv``: ``index,label,max_probability``, one row per sample in data order;
* ``soft_assignments.npy``: the N x K soft assignments Q (DEC eq. 1), float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import IO

import lightning as L
import numpy as np
import torch
from lightning.pytorch.cli import LightningArgumentParser

from dec_lightning.cli.common import DECLightningCLI, build_cli
from dec_lightning.data.validation import ConfigError, require_file
from dec_lightning.files import atomic_write_all
from dec_lightning.metrics.clustering import clustering_scores
from dec_lightning.modules import DEC
from dec_lightning.modules.dec import load_checkpoint_file

ASSIGNMENTS_FILE = "assignments.csv"
SOFT_ASSIGNMENTS_FILE = "soft_assignments.npy"


@dataclass
class Predictions:
    """Cluster assignments of a dataset, in data order."""

    index: np.ndarray  # (N,) dataset index of each row
    labels: np.ndarray  # (N,) hard assignment, argmax of Q
    soft_assignments: np.ndarray  # (N, K) Q; rows sum to 1
    scores: dict[str, float]  # ACC/NMI/ARI when the data has labels, else empty
    assignments_path: Path
    soft_assignments_path: Path


class DECPredictCLI(DECLightningCLI):
    """The training CLI's config plus the checkpoint to load and where to write."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        super().add_arguments_to_parser(parser)
        parser.add_argument("--output_dir", type=str, default="outputs/predictions", help="folder for the output files")


def load_dec_checkpoint(model: DEC, path: str | Path) -> None:
    """Load weights, centres and clustering state from a DEC checkpoint into ``model``.

    Checks first what a bare ``load_state_dict`` would report as a long tensor-size
    mismatch: that the file is a DEC checkpoint at all, and that K matches.
    """
    path = require_file(path, "DEC checkpoint", "pass the .ckpt written by `dec-lightning cluster` or `run`")
    checkpoint = load_checkpoint_file(path)
    state = checkpoint.get("state_dict")
    if not state or "centers" not in state:
        hint = (
            "; it looks like a pretraining checkpoint: pass it as --model.pretrained to `dec-lightning cluster`"
            if state and any(k.startswith("decoder.") for k in state)
            else ""
        )
        raise ConfigError(f"{path} is not a DEC clustering checkpoint (no cluster centres){hint}")
    k = state["centers"].shape[0]
    if k != model.n_clusters:
        raise ConfigError(f"{path} holds {k} clusters but model.n_clusters is {model.n_clusters}; set it to {k}")
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ConfigError(f"{path} does not fit the configured encoder (`encoder` in the config): {err}") from None
    model.on_load_checkpoint(checkpoint)


def write_predictions(output_dir: str | Path, index: np.ndarray, soft_assignments: np.ndarray) -> tuple[Path, Path]:
    """Write ``assignments.csv`` and ``soft_assignments.npy``; return their paths.

    Both are fully written to temporary files before either is renamed into place, so a
    failure while writing leaves the previous pair of outputs as it was.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    q = np.asarray(soft_assignments, dtype=np.float32)
    labels, confidence = q.argmax(axis=1), q.max(axis=1)

    def write_csv(f: IO[bytes]) -> None:
        f.write(b"index,label,max_probability\n")
        # %.9g round-trips float32 exactly
        f.writelines(f"{i},{c},{p:.9g}\n".encode() for i, c, p in zip(index, labels, confidence, strict=True))

    csv_path, npy_path = output_dir / ASSIGNMENTS_FILE, output_dir / SOFT_ASSIGNMENTS_FILE
    atomic_write_all([(npy_path, lambda f: np.save(f, q, allow_pickle=False)), (csv_path, write_csv)])
    return csv_path, npy_path


def predict(trainer: L.Trainer, model: DEC, datamodule: L.LightningDataModule, output_dir: str | Path) -> Predictions:
    """Assign every sample of ``datamodule``'s predict set and write the output files."""
    batches = trainer.predict(model, datamodule=datamodule)
    if not batches:
        raise ConfigError("the data's predict_dataloader yielded no batches")
    index = torch.cat([b["index"] for b in batches]).cpu()
    q = torch.cat([b["q"] for b in batches]).float().cpu()
    y = torch.cat([b["y"] for b in batches]).cpu()
    order = torch.argsort(index)
    index, q, y = index[order], q[order], y[order]
    labels = q.argmax(dim=1)
    csv_path, npy_path = write_predictions(output_dir, index.numpy(), q.numpy())
    return Predictions(
        index=index.numpy(),
        labels=labels.numpy(),
        soft_assignments=q.numpy(),
        scores=clustering_scores(labels, y),
        assignments_path=csv_path,
        soft_assignments_path=npy_path,
    )


def run_predict(args: list[str]) -> DECPredictCLI:
    """Parse ``--config FILE --ckpt_path DEC.ckpt [--output_dir DIR] [--key value ...]`` and predict.

    Returns the CLI with the result as its ``predictions`` attribute, for tests.
    """
    # nothing to record: predict trains nothing
    cli = build_cli("predict", args, cli_class=DECPredictCLI, save_config_callback=None)
    if not cli.config.ckpt_path:
        raise ConfigError("dec-lightning predict needs the trained DEC checkpoint: --ckpt_path PATH.ckpt")
    load_dec_checkpoint(cli.model, cli.config.ckpt_path)
    # one device and no training machinery: the outputs are gathered in one process
    trainer = cli.instantiate_trainer(
        devices=1, num_nodes=1, strategy="auto", logger=False, callbacks=[], enable_checkpointing=False
    )
    cli.predictions = predict(trainer, cli.model, cli.datamodule, cli.config.output_dir)
    if trainer.is_global_zero:
        scores = " ".join(f"{k.upper()}={v:.3f}" for k, v in cli.predictions.scores.items())
        n, k = cli.predictions.soft_assignments.shape
        print(f"assigned {n} samples to {k} clusters: {cli.predictions.assignments_path} {scores}".rstrip())
    return cli
