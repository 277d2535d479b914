"""The callbacks that schedule DEC's whole-dataset work, checked step by step on tiny blobs."""

from __future__ import annotations

from itertools import pairwise, permutations
from types import SimpleNamespace
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from torch import Tensor, nn

from dec_lightning.callbacks import CentroidReinit, KMeansInit, TargetDistributionRefresh, ToleranceStopping
from dec_lightning.callbacks.kmeans import match_clusters
from dec_lightning.data import ArrayDataModule
from dec_lightning.encoders import MLPEncoder
from dec_lightning.modules import DEC, target_distribution, whole_dataset_pass

K = 4


class DropoutEncoder(MLPEncoder):
    """An encoder whose output depends on train/eval mode, to catch passes that forget `eval()`."""

    def __init__(self, dims: list[int], p: float = 0.5) -> None:
        super().__init__(dims)
        self.drop = nn.Dropout(p)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(self.drop(x))


def make_dec(dm: ArrayDataModule, encoder: nn.Module | None = None) -> DEC:
    L.seed_everything(0, verbose=False)
    return DEC(encoder or MLPEncoder([dm.input_dim, 16, 4]), n_clusters=K)


def eval_embedding(module: DEC, x: Tensor) -> Tensor:
    """Embedding of all rows with the module in eval mode and without gradients."""
    was_training = module.training
    module.eval()
    with torch.no_grad():
        z = module.embed(x)
    module.train(was_training)
    return z


def eval_target(module: DEC, x: Tensor) -> Tensor:
    """P (eq. 3) from the current model's Q over the whole dataset."""
    was_training = module.training
    module.eval()
    with torch.no_grad():
        q = module(x)
    module.train(was_training)
    return target_distribution(q)


class StartProbe(L.Callback):
    """Snapshot at on_train_start (runs after the callbacks listed before it)."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.centers = pl_module.centers.detach().clone()
        self.embedding = eval_embedding(pl_module, trainer.datamodule.dataset.x)


# --- KMeansInit ---------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [7, None])
def test_kmeans_init_matches_sklearn(blobs_datamodule, trainer_kwargs, seed) -> None:
    """Centres = sklearn KMeans(K, n_init, random_state) on the eval-mode embedding of the whole train set."""
    dm = blobs_datamodule
    dm.setup()
    module = make_dec(dm, DropoutEncoder([dm.input_dim, 16, 4]))
    if seed is None:
        L.seed_everything(123, verbose=False)  # the default k-means seed derives from the run's seed
    init, probe = KMeansInit(init="kmeans", n_init=3, seed=seed), StartProbe()
    trainer = L.Trainer(max_steps=1, callbacks=[init, probe, TargetDistributionRefresh(5)], **trainer_kwargs)
    trainer.fit(module, datamodule=dm)

    assert init.done and init.state_dict() == {"done": True}
    kmeans = KMeans(K, n_init=3, random_state=123 if seed is None else seed)
    kmeans.fit(probe.embedding.double().numpy())
    np.testing.assert_allclose(probe.centers.numpy(), kmeans.cluster_centers_, rtol=0, atol=1e-5)
    # training-mode (dropout) embeddings would have given other centres: the check above is not vacuous
    module.train()
    with torch.no_grad():
        noisy = module.embed(dm.dataset.x)
    assert not torch.allclose(noisy, probe.embedding, atol=1e-3)


def test_kmeans_init_runs_once_per_run(blobs_datamodule, trainer_kwargs) -> None:
    """A restored `done` flag (resumed run) keeps the centres the run already has."""
    dm = blobs_datamodule
    module = make_dec(dm)
    init = KMeansInit(init="kmeans", n_init=1, seed=0)
    init.load_state_dict({"done": True})
    probe = StartProbe()
    before = module.centers.detach().clone()
    L.Trainer(max_steps=1, callbacks=[init, probe, TargetDistributionRefresh(5)], **trainer_kwargs).fit(
        module, datamodule=dm
    )
    torch.testing.assert_close(probe.centers, before)


# --- TargetDistributionRefresh ------------------------------------------------------------------
class RefreshProbe(L.Callback):
    """At each batch start, after the refresh: which P the step will use, and what P should be."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.records.append(
            {
                "step": trainer.global_step,
                "target_id": id(pl_module.target),
                "target": pl_module.target.clone(),
                "labels": pl_module.labels.clone(),
                "delta_label": pl_module.delta_label,
                "count": pl_module.refresh_count,
                "expected": eval_target(pl_module, trainer.datamodule.dataset.x),
            }
        )


def test_target_refresh_only_at_multiples_of_interval(blobs_datamodule, trainer_kwargs) -> None:
    dm = blobs_datamodule
    module = make_dec(dm)
    interval, max_steps = 5, 23  # 8 batches per epoch: refreshes straddle epoch boundaries
    probe = RefreshProbe()
    callbacks = [KMeansInit(init="kmeans", n_init=1, seed=0), TargetDistributionRefresh(interval), probe]
    L.Trainer(max_steps=max_steps, callbacks=callbacks, **trainer_kwargs).fit(module, datamodule=dm)

    records = probe.records
    assert [r["step"] for r in records] == list(range(max_steps))
    for prev, rec in pairwise(records):
        step = rec["step"]
        assert rec["count"] == step // interval + 1
        if step % interval == 0:  # refreshed: a new P, equal to eq. 3 on the current model's Q
            # (not `id`: the old P is freed before the pass, so the new one may reuse its address)
            assert not torch.equal(rec["target"], prev["target"])
            torch.testing.assert_close(rec["target"], rec["expected"], rtol=1e-5, atol=1e-6)
            changed = (rec["labels"] != prev["labels"]).float().mean().item()
            assert rec["delta_label"] == pytest.approx(changed)
        else:  # held fixed between refreshes, although the model has moved on
            assert rec["target_id"] == prev["target_id"]
            assert torch.equal(rec["target"], prev["target"])
    torch.testing.assert_close(records[0]["target"], records[0]["expected"], rtol=1e-5, atol=1e-6)
    assert records[0]["target"].shape == (len(dm.dataset), K)
    assert not torch.allclose(records[-1]["target"], records[-1]["expected"], atol=1e-6)
    assert module.refresh_count == (max_steps - 1) // interval + 1


def test_target_refresh_once_per_optimizer_step_with_accumulation(blobs_datamodule, trainer_kwargs) -> None:
    """accumulate_grad_batches=2: P is refreshed at the first batch of a refresh step only, so the next
    refresh sees a moved model and tolerance stopping does not fire on an unchanged P."""
    dm = blobs_datamodule
    module = make_dec(dm)
    probe, stopping = RefreshProbe(), ToleranceStopping(tol=1e-9)
    callbacks = [KMeansInit(init="kmeans", n_init=1, seed=0), TargetDistributionRefresh(3), stopping, probe]
    trainer = L.Trainer(max_steps=12, accumulate_grad_batches=2, callbacks=callbacks, **trainer_kwargs)
    trainer.fit(module, datamodule=dm)
    counts = {}
    for rec in probe.records:  # two batches per optimizer step; the count after each batch start
        counts.setdefault(rec["step"], []).append(rec["count"])
    # never refreshed on a step's 2nd batch (an epoch of 7 batches ends with a one-batch step)
    assert all(len(set(c)) == 1 for c in counts.values())
    assert sum(len(c) == 2 for c in counts.values()) >= 9
    assert [c[0] for c in counts.values()] == [step // 3 + 1 for step in counts]
    assert module.refresh_count == 4  # steps 0, 3, 6, 9
    assert stopping.stopped_step is None and trainer.global_step == 12


def test_target_refresh_rejects_bad_interval() -> None:
    with pytest.raises(ValueError, match="update_interval"):
        TargetDistributionRefresh(0)


# --- ToleranceStopping --------------------------------------------------------------------------
def test_tolerance_close_to_one_stops_at_second_refresh(blobs_datamodule, trainer_kwargs) -> None:
    dm = blobs_datamodule
    module = make_dec(dm)
    stopping = ToleranceStopping(tol=0.999)
    callbacks = [KMeansInit(init="kmeans", n_init=1, seed=0), TargetDistributionRefresh(5), stopping]
    trainer = L.Trainer(max_steps=100, callbacks=callbacks, **trainer_kwargs)
    trainer.fit(module, datamodule=dm)
    # the second refresh happens before step 5; that batch still finishes, so training ends at step 6
    assert module.refresh_count == 2
    assert module.delta_label < 0.999
    assert stopping.stopped_step == 6
    assert trainer.global_step == 6


def test_tolerance_zero_never_stops(blobs_datamodule, trainer_kwargs) -> None:
    dm = blobs_datamodule
    module = make_dec(dm)
    stopping = ToleranceStopping(tol=0.0)
    callbacks = [KMeansInit(init="kmeans", n_init=1, seed=0), TargetDistributionRefresh(4), stopping]
    trainer = L.Trainer(max_steps=30, callbacks=callbacks, **trainer_kwargs)
    trainer.fit(module, datamodule=dm)
    assert stopping.stopped_step is None
    assert trainer.global_step == 30
    assert module.refresh_count == 8  # steps 0, 4, ..., 28


class _Strategy:
    @staticmethod
    def reduce_boolean_decision(decision: bool, all: bool = True) -> bool:
        return decision


def test_tolerance_decision_rule() -> None:
    """Decides once per refresh, never on the first one, and only on a change strictly below tol."""
    stopping = ToleranceStopping(tol=0.1)
    trainer = SimpleNamespace(global_step=0, should_stop=False, strategy=_Strategy())
    module = SimpleNamespace(refresh_count=0, delta_label=float("nan"))

    def batch_end(step: int, refreshes: int, delta: float) -> bool:
        trainer.global_step, module.refresh_count, module.delta_label = step, refreshes, delta
        stopping.on_train_batch_end(trainer, module, None, None, 0)
        return trainer.should_stop

    assert not batch_end(1, 1, 0.0)  # first refresh: nothing to compare with
    assert not batch_end(2, 2, 0.1)  # not strictly below tol
    assert not batch_end(3, 2, 0.0)  # no new refresh since the last decision
    assert not batch_end(4, 3, 0.5)
    assert stopping.stopped_step is None
    assert batch_end(5, 4, 0.05)
    assert stopping.stopped_step == 5
    with pytest.raises(ValueError, match="tol"):
        ToleranceStopping(tol=1.0)


# --- CentroidReinit -----------------------------------------------------------------------------
class EpochProbe(L.Callback):
    """Snapshots at each epoch start and at each epoch's first batch start (after the refresh)."""

    def __init__(self, batches: bool = True) -> None:
        self.batches = batches
        self.epoch_start: list[dict[str, Any]] = []
        self.first_batch: list[dict[str, Any]] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.epoch_start.append(
            {
                "centers": pl_module.centers.detach().clone(),
                "target_is_none": pl_module.target is None,
                "labels": None if pl_module.labels is None else pl_module.labels.clone(),
                "embedding": eval_embedding(pl_module, trainer.datamodule.dataset.x),
            }
        )

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.batches and batch_idx == 0:
            self.first_batch.append(
                {
                    "count": pl_module.refresh_count,
                    "target": pl_module.target.clone(),
                    "expected": eval_target(pl_module, trainer.datamodule.dataset.x),
                }
            )


def test_centroid_reinit_each_epoch_after_the_first(blobs_datamodule, trainer_kwargs) -> None:
    dm = blobs_datamodule
    dm.setup()
    module = make_dec(dm)
    before, after = EpochProbe(batches=False), EpochProbe()
    reinit = CentroidReinit(n_init=2, seed=0)
    # interval far beyond the run: every refresh after the first is one forced by a stale P
    callbacks = [KMeansInit(init="kmeans", n_init=2, seed=0), before, reinit, TargetDistributionRefresh(1000), after]
    L.Trainer(max_epochs=3, callbacks=callbacks, **trainer_kwargs).fit(module, datamodule=dm)

    assert reinit.reinit_count == 2
    torch.testing.assert_close(after.epoch_start[0]["centers"], before.epoch_start[0]["centers"])
    for epoch in (1, 2):
        old, new = before.epoch_start[epoch], after.epoch_start[epoch]
        assert not torch.allclose(new["centers"], old["centers"], atol=1e-4)
        assert new["target_is_none"]  # P is stale until the next refresh
        # the new centres are k-means centres of the current embedding, up to renumbering
        kmeans = KMeans(K, n_init=2, random_state=0).fit(old["embedding"].double().numpy())
        expected = torch.from_numpy(kmeans.cluster_centers_).float()
        dist = torch.cdist(new["centers"], expected)
        assert sorted(dist.argmin(dim=1).tolist()) == list(range(K))
        assert dist.min(dim=1).values.max() < 1e-4
        # renumbered to agree best with the labels before the re-init (over all K! numberings)
        new_labels = torch.cdist(old["embedding"], new["centers"]).argmin(dim=1)
        agreement = (new_labels == old["labels"]).float().mean().item()
        best = max((torch.tensor(p)[new_labels] == old["labels"]).float().mean().item() for p in permutations(range(K)))
        assert agreement == pytest.approx(best)
        assert agreement > 0.5
    # P recomputed at the first step of every epoch after a re-init, from the new centres
    assert [r["count"] for r in after.first_batch] == [1, 2, 3]
    for record in after.first_batch:
        torch.testing.assert_close(record["target"], record["expected"], rtol=1e-5, atol=1e-6)


def test_match_clusters_recovers_permutation() -> None:
    old = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 3])
    perm_true = torch.tensor([2, 0, 3, 1])  # new id -> old id
    new = torch.argsort(perm_true)[old]  # relabel: old id o becomes new id inverse_perm[o]
    new[-1] = 0  # one disagreement does not change the best match
    perm = match_clusters(new, old, 4)
    assert torch.equal(perm, perm_true)


# --- whole_dataset_pass -------------------------------------------------------------------------
class PassProbe(L.Callback):
    def on_train_start(self, trainer, pl_module) -> None:
        self.modes: list[tuple[bool, bool]] = []

        def fn(x: Tensor) -> Tensor:
            self.modes.append((pl_module.training, torch.is_grad_enabled()))
            return torch.cat([2 * x, x.sum(dim=1, keepdim=True)], dim=1)

        self.output, self.labels = whole_dataset_pass(trainer, pl_module, fn, batch_size=7)
        self.training_after = pl_module.training


def test_whole_dataset_pass_returns_rows_in_index_order(blobs_datamodule, trainer_kwargs) -> None:
    dm = blobs_datamodule
    module = make_dec(dm)
    probe = PassProbe()
    callbacks = [KMeansInit(init="kmeans", n_init=1, seed=0), probe, TargetDistributionRefresh(5)]
    trainer = L.Trainer(max_steps=1, callbacks=callbacks, **trainer_kwargs)
    trainer.fit(module, datamodule=dm)
    x, y = dm.dataset.x, dm.dataset.y
    sampler = trainer.train_dataloader.sampler
    sampler.batches_seen = lambda: 0  # the first epoch's order (the run has drawn one batch of it)
    training_order = list(sampler)
    assert sorted(training_order) == list(range(len(x))) != training_order  # training order is shuffled
    torch.testing.assert_close(probe.output, torch.cat([2 * x, x.sum(dim=1, keepdim=True)], dim=1))
    assert torch.equal(probe.labels, y)
    assert len(probe.modes) == -(-len(x) // 7)
    assert all(mode == (False, False) for mode in probe.modes)  # eval mode, no gradients
    assert probe.training_after  # training mode restored


def test_whole_dataset_pass_needs_fit() -> None:
    trainer = SimpleNamespace(train_dataloader=None)
    with pytest.raises(RuntimeError, match="during fit"):
        whole_dataset_pass(trainer, nn.Linear(2, 2), lambda x: x)
