"""Re-clustering under 2-process DDP (gloo, CPU): DKM + Roy and DEC + BRB keep every rank bit-identical.

Like tests/test_ddp.py, this file is also the worker script (``python tests/test_reclustering_ddp.py
SPEC_JSON``), run in its own process group with a timeout; ``strategy="ddp"`` re-executes it for
rank 1. Each rank all-gathers the centres and all parameters at every batch start and after every
epoch's re-clustering, records whether all ranks hold the same bits, and writes ``OUT/rank{r}.json``.
No pretraining: the runs check that the ranks agree, not clustering quality.
"""

from __future__ import annotations

import json
import sys
from itertools import pairwise
from pathlib import Path
from typing import Any

import lightning as L
import torch
from worker_launch import launch_worker

from dec_lightning.callbacks import CentroidReinit, KMeansInit, TargetDistributionRefresh
from dec_lightning.data import DigitsDataModule
from dec_lightning.encoders import MLPEncoder
from dec_lightning.modules import DEC, DKM

DIMS = [64, 32, 10]
SEED = 0
EPOCHS = 3
BATCH_PER_RANK = 64  # 1797 digits, global batch 128: 14 steps per epoch
WORKER_TIMEOUT_S = 150


# ----------------------------------------------------------------------------- worker side


class RankProbe(L.Callback):
    """Whether centres and all parameters are bit-identical on all ranks, at every batch start and epoch end.

    Must come after `CentroidReinit` in the callback list, so that it sees the re-clustered centres.
    """

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.checks: list[dict[str, Any]] = []
        self.epoch_end_centers: list[list[list[float]]] = []
        self.epoch_centers_constant: list[bool] = []
        self._epoch_first: torch.Tensor | None = None

    def _equal(self, trainer: L.Trainer, t: torch.Tensor) -> bool:
        gathered = trainer.strategy.all_gather(t.detach().contiguous()).reshape(trainer.world_size, *t.shape)
        return all(torch.equal(gathered[0], other) for other in gathered)

    def _check(self, trainer: L.Trainer, pl_module: L.LightningModule, where: str) -> None:
        params = torch.cat([p.detach().flatten() for p in pl_module.parameters()])
        self.checks.append(
            {
                "where": where,
                "epoch": trainer.current_epoch,
                "step": trainer.global_step,
                "centers_equal": self._equal(trainer, pl_module.centers),
                "params_equal": self._equal(trainer, params),
            }
        )

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._check(trainer, pl_module, "batch_start")
        if batch_idx == 0:
            self._epoch_first = pl_module.centers.detach().clone()
            self.epoch_centers_constant.append(True)
        elif not torch.equal(pl_module.centers.detach(), self._epoch_first):
            self.epoch_centers_constant[-1] = False

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer, pl_module, "epoch_end")
        self.epoch_end_centers.append(pl_module.centers.detach().tolist())

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        reinit = next(cb for cb in trainer.callbacks if isinstance(cb, CentroidReinit))
        record = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "global_step": trainer.global_step,
            "checks": self.checks,
            "epoch_end_centers": self.epoch_end_centers,
            "epoch_centers_constant": self.epoch_centers_constant,
            "reinit_count": reinit.reinit_count,
            "reset_count": reinit.reset_count,
            "reset_seed": reinit.last_reset_seed,
            "labels": pl_module.labels.tolist(),
            "centers": pl_module.centers.detach().tolist(),
            "params": torch.cat([p.detach().flatten() for p in pl_module.parameters()]).tolist(),
        }
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


class DivergeRank1RNG(L.Callback):
    """Re-seed rank 1's global RNG at every epoch start (as rank-dependent augmentation would shift it).

    Placed before `CentroidReinit`: BRB's fresh weights must then still match rank 0's, which they
    do only because their seed comes from rank 0 and they are drawn from a generator of their own.
    """

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_rank == 1:
            torch.manual_seed(12345 + trainer.current_epoch)


def run_worker(spec: dict[str, Any]) -> None:
    """One 2-process fit; ``spec["mode"]``: ``"dkm_roy"`` or ``"dec_brb"``; ``spec["out"]``: output folder."""
    torch.set_num_threads(1)
    L.seed_everything(SEED)
    encoder = MLPEncoder(DIMS)
    if spec["mode"] == "dkm_roy":
        model = DKM(encoder, n_clusters=10)
        callbacks = [CentroidReinit(mode="roy", n_init=2, seed=SEED)]
    else:  # BRB every epoch; seed None: k-means and fresh weights seeded from the run's seed, taken from rank 0
        model = DEC(encoder, n_clusters=10)
        brb = CentroidReinit(mode="brb", interval=1, n_init=2)
        callbacks = [TargetDistributionRefresh(update_interval=5), DivergeRank1RNG(), brb]
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_epochs=EPOCHS,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[KMeansInit(init="kmeans", n_init=2, seed=SEED), *callbacks, RankProbe(spec["out"])],
    )
    trainer.fit(model, datamodule=DigitsDataModule(batch_size=BATCH_PER_RANK))


# ----------------------------------------------------------------------------- test side


def launch(mode: str, out: Path) -> list[dict[str, Any]]:
    """Run the worker in its own process group (killed whole on timeout); return both ranks' records."""
    spec = {"mode": mode, "out": str(out)}
    log = launch_worker(__file__, spec, out, WORKER_TIMEOUT_S, f"2-process {mode} run")
    records = []
    for rank in (0, 1):
        path = out / f"rank{rank}.json"
        assert path.is_file(), f"rank {rank} wrote no result:\n{log[-3000:]}"
        records.append(json.loads(path.read_text()))
    return records


def assert_ranks_identical(rank0: dict[str, Any], rank1: dict[str, Any]) -> None:
    assert rank0["world_size"] == rank1["world_size"] == 2
    assert rank0["checks"] == rank1["checks"]  # same checkpoints, same verdicts
    steps_per_epoch = -(-1797 // (2 * BATCH_PER_RANK))  # the last, partial global batch included
    assert len([c for c in rank0["checks"] if c["where"] == "batch_start"]) == EPOCHS * steps_per_epoch
    for check in rank0["checks"]:
        assert check["centers_equal"], f"centres differ across ranks: {check}"
        assert check["params_equal"], f"weights differ across ranks: {check}"
    for key in ("centers", "params", "labels", "epoch_end_centers", "reinit_count", "reset_count", "reset_seed"):
        assert rank0[key] == rank1[key], key


def test_dkm_roy_identical_across_ranks(tmp_path: Path) -> None:
    rank0, rank1 = launch("dkm_roy", tmp_path)
    assert_ranks_identical(rank0, rank1)
    assert rank0["reinit_count"] == EPOCHS  # k-means at every epoch end
    assert rank0["epoch_centers_constant"] == [True] * EPOCHS  # frozen within every epoch, on every rank
    ends = [torch.tensor(c) for c in rank0["epoch_end_centers"]]
    assert all(not torch.equal(a, b) for a, b in pairwise(ends))  # the embedding moved


def test_dec_brb_identical_across_ranks(tmp_path: Path) -> None:
    rank0, rank1 = launch("dec_brb", tmp_path)
    assert_ranks_identical(rank0, rank1)
    assert rank0["reset_count"] == rank0["reinit_count"] == EPOCHS - 1  # at the start of epochs 1 and 2
    # rank 0's torch.initial_seed() (seed_everything(0)) plus the reset count, although rank 1's RNG was re-seeded
    assert rank0["reset_seed"] == SEED + 1
    assert rank0["epoch_centers_constant"] == [False] * EPOCHS  # DEC's centres train between the resets


if __name__ == "__main__":
    run_worker(json.loads(sys.argv[1]))
