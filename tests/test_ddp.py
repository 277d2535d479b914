"""Multi-process DDP must cluster like one process (issue 5), checked on CPU with 2 gloo processes.

The clustering runs happen in subprocesses: this file is also the worker script
(``python tests/test_ddp.py SPEC_JSON``), so a hung collective is killed by a timeout
instead of hanging pytest (pytest-timeout is not a dependency). The worker uses
``strategy="ddp"``: Lightning re-executes the script for rank 1, which is what
``dec-lightning ... --trainer.strategy ddp`` does, and starts one interpreter fewer than
``ddp_spawn`` (which works too: pass ``"strategy": "ddp_spawn"`` in the spec). Only rank 0's
state would come back to a parent, so every rank writes what it saw to
``OUT/rank{r}.json`` (and, at the first refresh of P, ``OUT/first_refresh_rank{r}.pt``)
and the tests read those files.

One short pretraining runs once, in the pytest process; both clustering runs start from
its encoder weights with the same seed and the same *global* batches: 2 ranks x 64 vs
1 process x 128, each with the package's own data module (the ranks' batches together are
the single process's batch, `test_rank_batches_partition_the_global_batch`). Then the runs
differ only by floating-point rounding.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from sklearn.metrics import adjusted_rand_score
from torch.utils.data import DataLoader
from worker_launch import launch_worker

from dec_lightning.callbacks import CentroidReinit, KMeansInit, TargetDistributionRefresh, ToleranceStopping
from dec_lightning.data import DigitsDataModule
from dec_lightning.data.base import EpochShuffleSampler
from dec_lightning.encoders import MLPEncoder
from dec_lightning.modules import DEC, AutoencoderPretraining
from dec_lightning.modules.assignment import target_distribution
from dec_lightning.modules.dataset_pass import whole_dataset_pass

DIMS = [64, 64, 10]
N_DIGITS = 1797  # odd: a 2-way DistributedSampler pads one duplicate that must be dropped
SEED = 0
GLOBAL_BATCH = 128
MAX_STEPS = 600
UPDATE_INTERVAL = 60  # four epochs of 128-sample global batches
TOL = 0.05
REINIT_STEPS = 45  # CentroidReinit at the start of epochs 1 and 2 (steps 15 and 30)
WORKER_TIMEOUT_S = 120


# ----------------------------------------------------------------------------- worker side


class RankProbe(L.Callback):
    """Records, at every refresh of P, whether P and the centres are bit-identical on all ranks.

    Must come after `TargetDistributionRefresh` in the callback list so that it sees the
    refreshed P in the same ``on_train_batch_start``.
    """

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.seen = 0
        self.refreshes: list[dict[str, Any]] = []

    def _gather(self, trainer: L.Trainer, t: torch.Tensor) -> torch.Tensor:
        # SingleDeviceStrategy returns the tensor as is; DDP stacks a leading world dimension
        return trainer.strategy.all_gather(t.contiguous()).reshape(trainer.world_size, *t.shape)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: DEC, batch: Any, batch_idx: int) -> None:
        if pl_module.refresh_count == self.seen:
            return
        self.seen = pl_module.refresh_count
        p = pl_module.target
        centers = pl_module.centers.detach()
        params = torch.cat([w.detach().flatten() for w in pl_module.parameters()])
        all_p, all_c, all_w = (self._gather(trainer, t) for t in (p, centers, params))
        self.refreshes.append(
            {
                "step": trainer.global_step,
                "refresh": pl_module.refresh_count,
                "p_rows": p.shape[0],
                "p_equal": all(torch.equal(all_p[0], other) for other in all_p),
                "centers_equal": all(torch.equal(all_c[0], other) for other in all_c),
                "params_equal": all(torch.equal(all_w[0], other) for other in all_w),
                "delta_label": pl_module.delta_label,
            }
        )
        if pl_module.refresh_count == 1:
            q, y = whole_dataset_pass(trainer, pl_module, pl_module.forward)
            state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
            torch.save(
                {"q": q.cpu(), "y": y.cpu(), "p": p.cpu(), "state": state},
                self.out_dir / f"first_refresh_rank{trainer.global_rank}.pt",
            )

    def on_fit_end(self, trainer: L.Trainer, pl_module: DEC) -> None:
        stopper = next(cb for cb in trainer.callbacks if isinstance(cb, ToleranceStopping))
        record = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "global_step": trainer.global_step,
            "stopped_step": stopper.stopped_step,
            "refreshes": self.refreshes,
            "labels": pl_module.labels.tolist(),
            "centers": pl_module.centers.detach().tolist(),
            "scores": pl_module.scores,
        }
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


def run_worker(spec: dict[str, Any]) -> None:
    """One clustering fit; ``spec``: devices, weights (encoder state file), out (folder), reinit.

    With ``reinit``, `CentroidReinit` re-runs k-means every epoch and the run lasts
    ``REINIT_STEPS`` (no tolerance stop) so that it re-initialises twice.
    """
    reinit = bool(spec.get("reinit", False))
    init = spec.get("init", "kmeans")  # the k-means runs are the reference; "graph": the graph start
    torch.set_num_threads(1)
    devices = int(spec["devices"])
    L.seed_everything(SEED)
    encoder = MLPEncoder(DIMS)
    model = DEC(encoder, n_clusters=10, pretrained=spec["weights"])
    data = DigitsDataModule(batch_size=GLOBAL_BATCH // devices)  # batch_size is per device
    strategy = spec.get("strategy", "ddp") if devices > 1 else "auto"
    trainer = L.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy=strategy,
        max_steps=REINIT_STEPS if reinit else MAX_STEPS,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[
            KMeansInit(n_init=4, seed=SEED, init=init, micro_clusters=50, graph_samples=spec.get("graph_samples")),
            TargetDistributionRefresh(update_interval=UPDATE_INTERVAL),
            RankProbe(spec["out"]),
            ToleranceStopping(tol=0.0 if reinit else TOL),
            *([CentroidReinit(n_init=4, seed=SEED)] if reinit else []),
        ],
    )
    trainer.fit(model, datamodule=data)


# ----------------------------------------------------------------------------- test side


def launch(devices: int, weights: Path, out: Path, reinit: bool = False, **init: Any) -> None:
    """Run the worker in its own process group; kill the whole group if it outlives the timeout.
    ``init``: `KMeansInit` settings (``init``, ``graph_samples``)."""
    spec = {"devices": devices, "weights": str(weights), "out": str(out), "reinit": reinit, **init}
    launch_worker(__file__, spec, out, WORKER_TIMEOUT_S, f"{devices}-process clustering")


def read_ranks(out: Path, world: int) -> list[dict[str, Any]]:
    records = []
    for rank in range(world):
        path = out / f"rank{rank}.json"
        assert path.is_file(), f"rank {rank} wrote no result"
        records.append(json.loads(path.read_text()))
    return records


def pretrain_encoder(path: Path) -> Path:
    """A short single-process autoencoder pretraining; both clustering runs start from it."""
    torch.set_num_threads(1)
    L.seed_everything(SEED)
    encoder = MLPEncoder(DIMS)
    pretrain = AutoencoderPretraining(encoder, finetune_steps=300, optimizer=lambda p: torch.optim.Adam(p, lr=3e-3))
    L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=300,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    ).fit(pretrain, datamodule=DigitsDataModule(batch_size=256))
    torch.save(encoder.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pretrain_encoder(tmp_path_factory.mktemp("ddp_weights") / "encoder.pt")


@pytest.fixture(scope="module")
def runs(weights: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Cluster from the same pretrained weights with 1 and with 2 processes."""
    root = tmp_path_factory.mktemp("ddp")
    outs = {1: root / "single", 2: root / "ddp"}
    for devices, out in outs.items():
        launch(devices, weights, out)
    return outs


def test_rank_batches_partition_the_global_batch() -> None:
    """What "same global batch" means: 2 ranks x 64 see the samples of 1 process x 128, step by step.

    The data module's sampler deals each rank every second position of the one-process order,
    padded at the end with index -1 (weighed 0 by the losses), so the last, partial batch
    matches too.
    """
    data = DigitsDataModule(batch_size=GLOBAL_BATCH)
    data.setup()
    for epoch in (0, 3):
        single = EpochShuffleSampler(data.dataset, seed=SEED, batch_size=GLOBAL_BATCH)
        ranks = [EpochShuffleSampler(data.dataset, SEED, GLOBAL_BATCH // 2, num_replicas=2, rank=r) for r in (0, 1)]
        for sampler in (single, *ranks):
            sampler.set_epoch(epoch)
        single_batches = [b.tolist() for b in DataLoader(list(single), batch_size=GLOBAL_BATCH)]
        rank_batches = [[b.tolist() for b in DataLoader(list(s), batch_size=GLOBAL_BATCH // 2)] for s in ranks]
        assert len(rank_batches[0]) == len(rank_batches[1]) == len(single_batches) == -(-N_DIGITS // GLOBAL_BATCH)
        for step, expected in enumerate(single_batches):
            together = [i for i in rank_batches[0][step] + rank_batches[1][step] if i >= 0]
            assert sorted(together) == sorted(expected)
        assert sum(i < 0 for b in rank_batches[1] for i in b) == 1  # odd N: one padding entry, on rank 1


def test_ddp_clustering_matches_single_process(runs: dict[int, Path]) -> None:
    (single,) = read_ranks(runs[1], 1)
    rank0, rank1 = read_ranks(runs[2], 2)
    assert rank0["world_size"] == rank1["world_size"] == 2 and single["world_size"] == 1
    # k-means on rank 0, broadcast: the same initial centres as one process computes
    init = [torch.load(runs[d] / "first_refresh_rank0.pt", weights_only=True)["state"]["centers"] for d in (1, 2)]
    torch.testing.assert_close(init[1], init[0], atol=1e-5, rtol=1e-5)
    assert rank0["labels"] == rank1["labels"]
    ari = adjusted_rand_score(single["labels"], rank0["labels"])
    assert ari >= 0.99, f"DDP and single-process labelings disagree: ARI={ari:.4f}"
    assert rank0["global_step"] == single["global_step"]
    # gradients averaged over ranks = the gradient of the global batch: same centres after training
    torch.testing.assert_close(torch.tensor(rank0["centers"]), torch.tensor(single["centers"]), atol=1e-3, rtol=0)
    # a meaningful clustering, not two copies of a trivial one
    assert len(set(single["labels"])) == 10
    assert single["scores"]["ari"] > 0.5


def test_p_and_centres_identical_across_ranks_at_every_refresh(runs: dict[int, Path]) -> None:
    rank0, rank1 = read_ranks(runs[2], 2)
    steps = [record["step"] for record in rank0["refreshes"]]
    assert steps[:2] == [0, UPDATE_INTERVAL]  # at k-means init, and after DDP training steps
    assert rank0["refreshes"] == rank1["refreshes"]  # same steps, counts, delta_label
    for record in rank0["refreshes"]:
        assert record["p_rows"] == N_DIGITS
        assert record["p_equal"], f"P differs across ranks at step {record['step']}"
        assert record["centers_equal"], f"centres differ across ranks at step {record['step']}"
        assert record["params_equal"], f"encoder weights differ across ranks at step {record['step']}"


def test_ranks_stop_together_on_tolerance(runs: dict[int, Path]) -> None:
    rank0, rank1 = read_ranks(runs[2], 2)
    assert rank0["stopped_step"] is not None, "ToleranceStopping never fired; raise MAX_STEPS or TOL"
    assert rank0["stopped_step"] == rank1["stopped_step"]
    assert rank0["global_step"] == rank1["global_step"] < MAX_STEPS
    last = rank0["refreshes"][-1]
    assert last["delta_label"] < TOL


def test_uneven_shards_give_n_rows_in_index_order(runs: dict[int, Path]) -> None:
    """Gathered Q has exactly N rows, in dataset order, equal to one process's Q for the same weights."""
    first = [torch.load(runs[2] / f"first_refresh_rank{r}.pt", weights_only=True) for r in (0, 1)]
    model = DEC(MLPEncoder(DIMS), n_clusters=10)
    model.load_state_dict(first[0]["state"])
    model.eval()
    data = DigitsDataModule()
    data.setup()
    with torch.no_grad():
        q_ref = model(data.dataset.x)
    for got in first:
        assert got["q"].shape == got["p"].shape == (N_DIGITS, 10)
        assert torch.equal(got["y"], data.dataset.y)  # labels scattered back in index order
        torch.testing.assert_close(got["q"], q_ref, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(got["p"], target_distribution(q_ref), atol=1e-6, rtol=1e-5)
    assert torch.equal(first[0]["q"], first[1]["q"])


@pytest.mark.slow
def test_centroid_reinit_under_ddp(weights: Path, tmp_path: Path) -> None:
    """CentroidReinit's k-means on rank 0 + broadcast keeps the ranks, and the 1-process run, in step."""
    outs = {1: tmp_path / "single", 2: tmp_path / "ddp"}
    for devices, out in outs.items():
        launch(devices, weights, out, reinit=True)
    (single,) = read_ranks(outs[1], 1)
    rank0, rank1 = read_ranks(outs[2], 2)
    # refreshes at k-means init and after each re-initialisation made P stale
    assert [r["step"] for r in rank0["refreshes"]] == [0, 15, 30]
    assert rank0["refreshes"] == rank1["refreshes"]
    assert all(r["p_equal"] and r["centers_equal"] and r["params_equal"] for r in rank0["refreshes"])
    assert rank0["global_step"] == rank1["global_step"] == single["global_step"] == REINIT_STEPS
    ari = adjusted_rand_score(single["labels"], rank0["labels"])
    assert ari >= 0.99, f"DDP and single-process labelings disagree after CentroidReinit: ARI={ari:.4f}"


@pytest.mark.slow
def test_graph_start_under_ddp(weights: Path, runs: dict[int, Path], tmp_path: Path) -> None:
    """The graph start runs on rank 0 and is broadcast: the same centres as one process, ranks in step.
    Its graph is built from a sample of 600 of the 1797 rows, the path that bounds its time at any N."""
    outs = {1: tmp_path / "single", 2: tmp_path / "ddp"}
    for devices, out in outs.items():
        launch(devices, weights, out, init="graph", graph_samples=600)
    (single,) = read_ranks(outs[1], 1)
    rank0, rank1 = read_ranks(outs[2], 2)
    init = [torch.load(outs[d] / "first_refresh_rank0.pt", weights_only=True)["state"]["centers"] for d in (1, 2)]
    torch.testing.assert_close(init[1], init[0], atol=1e-5, rtol=1e-5)
    kmeans = torch.load(runs[1] / "first_refresh_rank0.pt", weights_only=True)["state"]["centers"]
    assert not torch.allclose(init[0], kmeans, atol=1e-3)  # the graph start ran, not k-means
    assert rank0["refreshes"] == rank1["refreshes"] and rank0["labels"] == rank1["labels"]
    assert all(r["p_equal"] and r["centers_equal"] for r in rank0["refreshes"])
    ari = adjusted_rand_score(single["labels"], rank0["labels"])
    assert ari >= 0.99, f"DDP and single-process labelings disagree with the graph start: ARI={ari:.4f}"


if __name__ == "__main__":
    run_worker(json.loads(sys.argv[1]))
