"""Deep k-Means (DKM), Roy's alternation and BRB: loss and gradients by hand, schedules, callbacks step by step."""

from __future__ import annotations

import copy
import math
import warnings
from itertools import pairwise
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from torch import Tensor, nn

from dec_lightning.callbacks import CentroidReinit, KMeansInit, TargetDistributionRefresh, ToleranceStopping
from dec_lightning.callbacks.kmeans import match_clusters
from dec_lightning.callbacks.soft_reset import embedding_layer, resettable_layers, soft_reset
from dec_lightning.data import ArrayDataModule
from dec_lightning.encoders import ConvEncoder, MLPEncoder
from dec_lightning.metrics import clustering_scores
from dec_lightning.modules import DEC, DKM
from dec_lightning.modules.assignment import squared_distances
from dec_lightning.modules.dkm import dkm_alpha_schedule, dkm_clustering_loss, kmeans_soft_assignment

K = 4


class LinearEncoder(nn.Linear):
    """z = W x without bias: an encoder whose embedding is easy to compute by hand."""

    def __init__(self, weight: Tensor) -> None:
        super().__init__(weight.shape[1], weight.shape[0], bias=False)
        self.weight.data.copy_(weight)
        self.input_dim, self.embedding_dim = weight.shape[1], weight.shape[0]


def eval_embedding(module: L.LightningModule, x: Tensor) -> Tensor:
    was_training = module.training
    module.eval()
    with torch.no_grad():
        z = module.embed(x)
    module.train(was_training)
    return z


def nearest_centres(module: L.LightningModule, x: Tensor) -> Tensor:
    return torch.cdist(eval_embedding(module, x).double(), module.centers.detach().double()).argmin(dim=1)


# --- the DKM loss by hand -----------------------------------------------------------------------
# 3 points, 2 centres, z = diag(1, 2) x, decoder = identity. With alpha = ln 3, exp(-alpha d) = 3^-d:
#   z = (0,0), (1,0), (0,2);  r = (0,0), (1,1)
#   d = [[0, 2], [1, 1], [4, 2]]            (squared distances)
#   G = [[.9, .1], [.5, .5], [.1, .9]]      (3^-d normalised per row)
#   k-means term = mean(0*.9 + 2*.1, 1*.5 + 1*.5, 4*.1 + 2*.9) = (0.2 + 1 + 2.2) / 3 = 17/15
#   reconstruction = mean(0, 0, ||(0,2) - (0,1)||^2) = 1/3;  lambda = 0.5: loss = 1/3 + 17/30 = 0.9
X = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]
W_ENC = [[1.0, 0.0], [0.0, 2.0]]
CENTRES = [[0.0, 0.0], [1.0, 1.0]]
ALPHA = math.log(3.0)
LAMBDA = 0.5


def hand_gradients(z: np.ndarray, r: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """d, and the k-means term's gradients w.r.t. z and r in float64.

    With dbar_i = sum_k G_ik d_ik: d/d d_ij (sum_k d_ik G_ik) = G_ij (1 - alpha (d_ij - dbar_i)),
    and d d_ij / d z_i = 2 (z_i - r_j) = -d d_ij / d r_j; the batch mean divides by B.
    """
    d = ((z[:, None, :] - r[None, :, :]) ** 2).sum(-1)
    g = np.exp(-alpha * d) / np.exp(-alpha * d).sum(1, keepdims=True)
    dbar = (g * d).sum(1, keepdims=True)
    w = g * (1 - alpha * (d - dbar)) / len(z)  # B x K
    diff = 2 * (z[:, None, :] - r[None, :, :])  # B x K x D
    return d, (w[:, :, None] * diff).sum(1), -(w[:, :, None] * diff).sum(0)


def hand_model(dtype: torch.dtype = torch.float32) -> DKM:
    decoder = nn.Linear(2, 2, bias=False)
    decoder.weight.data.copy_(torch.eye(2))
    module = DKM(
        LinearEncoder(torch.tensor(W_ENC)), n_clusters=2, alpha=ALPHA, decoder=decoder, clustering_weight=LAMBDA
    )
    module.centers.data.copy_(torch.tensor(CENTRES))
    return module.to(dtype)


def test_dkm_loss_value_matches_hand_computation() -> None:
    module = hand_model()
    x = torch.tensor(X)
    z = module.embed(x)
    d = squared_distances(z, module.centers)
    assert torch.equal(d.detach(), torch.tensor([[0.0, 2.0], [1.0, 1.0], [4.0, 2.0]]))
    g = kmeans_soft_assignment(d, ALPHA)
    torch.testing.assert_close(g, torch.tensor([[0.9, 0.1], [0.5, 0.5], [0.1, 0.9]]), atol=1e-6, rtol=0)
    terms = module.loss_terms(x, torch.arange(3))
    assert terms["kmeans"].item() == pytest.approx(17 / 15, abs=1e-6)
    assert terms["reconstruction"].item() == pytest.approx(1 / 3, abs=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log outside a Trainer
        loss = module.training_step((x, torch.zeros(3), torch.arange(3)), 0)
    assert loss.item() == pytest.approx(0.9, abs=1e-6)
    # forward: the soft assignments; their argmax is the nearest centre (ties go to the first)
    torch.testing.assert_close(module(x), g)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_dkm_loss_gradients_match_hand_formula(dtype: torch.dtype) -> None:
    """Gradients of the k-means term w.r.t. embeddings and centres, and of the full loss w.r.t. W and r."""
    x64, w64, r64 = np.array(X), np.array(W_ENC), np.array(CENTRES)
    z64 = x64 @ w64.T
    d64, grad_z, grad_r = hand_gradients(z64, r64, ALPHA)
    tol = {"atol": 1e-12, "rtol": 1e-12} if dtype == torch.float64 else {"atol": 1e-6, "rtol": 1e-5}

    z = torch.tensor(z64, dtype=dtype, requires_grad=True)
    r = torch.tensor(r64, dtype=dtype, requires_grad=True)
    loss = dkm_clustering_loss(z, r, ALPHA)
    loss.backward()
    assert loss.item() == pytest.approx(17 / 15, rel=1e-6)
    torch.testing.assert_close(z.grad, torch.tensor(grad_z, dtype=dtype), **tol)
    torch.testing.assert_close(r.grad, torch.tensor(grad_r, dtype=dtype), **tol)
    # not the hard k-means gradient: the softmax weights move too (alpha (d - dbar) != 0)
    hard = 2 * (z64 - r64[d64.argmin(1)]) / 3
    assert np.abs(grad_z - hard).max() > 0.1

    # the module: loss = recon + lambda * kmeans; dL/dW = sum_i dL/dz_i x_i^T, recon adds 2/B (z_i - x_i)
    module = hand_model(dtype)
    terms = module.loss_terms(torch.tensor(x64, dtype=dtype), torch.arange(3))
    (terms["reconstruction"] + LAMBDA * terms["kmeans"]).backward()
    grad_z_total = LAMBDA * grad_z + 2 * (z64 - x64) / 3
    torch.testing.assert_close(module.encoder.weight.grad, torch.tensor(grad_z_total.T @ x64, dtype=dtype), **tol)
    torch.testing.assert_close(module.centers.grad, torch.tensor(LAMBDA * grad_r, dtype=dtype), **tol)


def test_dkm_loss_is_finite_at_large_distances_and_large_alpha() -> None:
    """Distances ~1e4 and alpha = 1000: exp(-alpha d) underflows to 0/0 without the min shift."""
    gen = torch.Generator().manual_seed(0)
    z = (100 * torch.randn(6, 3, generator=gen)).requires_grad_(True)
    r = (100 * torch.randn(4, 3, generator=gen)).requires_grad_(True)
    d = squared_distances(z, r).detach()
    assert d.min() > 100 and d.max() > 1e4
    naive = torch.exp(-1000 * d) / torch.exp(-1000 * d).sum(1, keepdim=True)
    assert torch.isnan(naive).all()  # what the shift prevents

    loss = dkm_clustering_loss(z, r, 1000.0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all() and torch.isfinite(r.grad).all()
    # the gaps between distances are >> 1/alpha: G is one-hot, the loss and its gradient are hard k-means'
    nearest = d.argmin(dim=1)
    assert loss.item() == pytest.approx(d.min(dim=1).values.mean().item(), rel=1e-6)
    expected = 2 * (z.detach() - r.detach()[nearest]) / len(z)
    torch.testing.assert_close(z.grad, expected, rtol=1e-5, atol=1e-3)


# --- alpha --------------------------------------------------------------------------------------
def test_alpha_annealing_schedule_matches_reference_formula() -> None:
    alphas = dkm_alpha_schedule()
    assert len(alphas) == 40 and alphas[0] == 0.1
    for i in range(1, 40):  # dkm.py: alphas[i] = 2 ** (1 / log(i + 1) ** 2) * alphas[i - 1]
        assert alphas[i] == pytest.approx(2 ** (1 / math.log(i + 1) ** 2) * alphas[i - 1], rel=1e-12)
    assert alphas[1] == pytest.approx(0.1 * 2 ** (1 / math.log(2) ** 2)) == pytest.approx(0.4232086, rel=1e-6)
    assert alphas[-1] == pytest.approx(28.1325781, rel=1e-6)
    assert all(b > a for a, b in pairwise(alphas))

    annealed = DKM(MLPEncoder([4, 3, 2]), n_clusters=2, annealing=True, epochs_per_alpha=5, n_alphas=40)
    assert [annealed.alpha_at_epoch(e) for e in (0, 4, 5, 9, 10, 199, 200, 1000)] == [
        alphas[0], alphas[0], alphas[1], alphas[1], alphas[2], alphas[39], alphas[39], alphas[39],
    ]  # fmt: skip
    constant = DKM(MLPEncoder([4, 3, 2]), n_clusters=2)
    assert constant.alpha_at_epoch(0) == constant.alpha_at_epoch(500) == constant.current_alpha == 1000.0
    with pytest.raises(ValueError, match="alpha"):
        DKM(MLPEncoder([4, 3, 2]), n_clusters=2, alpha=0.0)


# --- DKM in a Trainer ---------------------------------------------------------------------------
def make_dkm(dm: ArrayDataModule, **kwargs: Any) -> DKM:
    L.seed_everything(0, verbose=False)
    return DKM(MLPEncoder([dm.input_dim, 16, 8, 4]), n_clusters=K, **kwargs)


class BatchProbe(L.Callback):
    """At every batch start: step, epoch, refresh count, alpha, centres and the expected labels."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.records.append(
            {
                "step": trainer.global_step,
                "epoch": trainer.current_epoch,
                "count": pl_module.refresh_count,
                "alpha": pl_module.current_alpha,
                "centers": pl_module.centers.detach().clone(),
                "requires_grad": pl_module.centers.requires_grad,
                "labels": pl_module.labels.clone(),
                "nearest": nearest_centres(pl_module, trainer.datamodule.dataset.x),
            }
        )


def test_dkm_trains_and_refreshes_labels_each_epoch(blobs_datamodule, trainer_kwargs) -> None:
    dm = blobs_datamodule
    module = make_dkm(dm, annealing=True, epochs_per_alpha=2)
    probe = BatchProbe()
    L.Trainer(max_epochs=5, callbacks=[KMeansInit(init="kmeans", n_init=2, seed=0), probe], **trainer_kwargs).fit(
        module, datamodule=dm
    )
    records = probe.records
    alphas = dkm_alpha_schedule()
    for rec in records:
        assert rec["count"] == rec["epoch"] + 1  # one label refresh per epoch, at its start
        assert rec["alpha"] == alphas[rec["epoch"] // 2]
        assert rec["requires_grad"]
    for rec in (r for i, r in enumerate(records) if i == 0 or r["epoch"] != records[i - 1]["epoch"]):
        assert torch.equal(rec["labels"], rec["nearest"])  # labels = nearest centres at the refresh
    # DKM moves its centres by gradient steps
    assert not torch.allclose(records[0]["centers"], records[-1]["centers"])
    # final assignments (on_train_end): nearest centres of the final model, scored against the blobs' labels
    x = dm.dataset.x
    assert torch.equal(module.labels, nearest_centres(module, x))
    assert module.scores == clustering_scores(module.labels, dm.dataset.y)


def test_tolerance_stopping_works_with_dkm(blobs_datamodule, trainer_kwargs) -> None:
    """ToleranceStopping reads DKM's per-epoch label refreshes: tol 0.999 stops at the second one."""
    dm = blobs_datamodule
    module = make_dkm(dm)
    stopping = ToleranceStopping(tol=0.999)
    trainer = L.Trainer(
        max_epochs=10, callbacks=[KMeansInit(init="kmeans", n_init=1, seed=0), stopping], **trainer_kwargs
    )
    trainer.fit(module, datamodule=dm)
    steps_per_epoch = len(dm.train_dataloader())
    assert module.refresh_count == 2
    assert stopping.stopped_step == trainer.global_step == steps_per_epoch + 1  # the refresh's batch still runs


def test_target_refresh_is_harmless_with_dkm(blobs_datamodule, trainer_kwargs) -> None:
    """An unneeded TargetDistributionRefresh only adds label refreshes at its interval, never one per step."""
    dm = blobs_datamodule
    module = make_dkm(dm)
    probe = BatchProbe()
    callbacks = [KMeansInit(init="kmeans", n_init=1, seed=0), TargetDistributionRefresh(update_interval=5), probe]
    L.Trainer(max_steps=12, callbacks=callbacks, **trainer_kwargs).fit(module, datamodule=dm)
    steps_per_epoch = len(dm.train_dataloader())  # 7: epoch starts at steps 0 and 7
    counts = [r["count"] for r in probe.records]
    # epoch-start refreshes at steps 0 and 7, interval refreshes at steps 0, 5, 10
    expected, count = [], 0
    for step in range(12):
        count += (step % steps_per_epoch == 0) + (step % 5 == 0)
        expected.append(count)
    assert counts == expected
    assert module.target is not None and module.target.shape == (len(dm.dataset), K)


def test_dkm_checkpoint_round_trip(blobs_datamodule, trainer_kwargs, tmp_path: Path) -> None:
    dm = blobs_datamodule
    module = make_dkm(dm, annealing=True, epochs_per_alpha=1)
    trainer = L.Trainer(max_epochs=3, callbacks=[KMeansInit(init="kmeans", n_init=1, seed=0)], **trainer_kwargs)
    trainer.fit(module, datamodule=dm)
    path = tmp_path / "dkm.ckpt"
    trainer.save_checkpoint(path)
    restored = DKM.load_from_checkpoint(path, encoder=MLPEncoder([dm.input_dim, 16, 8, 4]))
    assert restored.hparams.annealing and restored.hparams.epochs_per_alpha == 1
    assert restored.current_alpha == module.current_alpha == dkm_alpha_schedule()[2]
    assert restored.refresh_count == module.refresh_count == 3
    assert torch.equal(restored.labels, module.labels)
    for key, value in module.state_dict().items():
        assert torch.equal(restored.state_dict()[key], value), key


# --- Roy: centres frozen within an epoch, k-means at its end ------------------------------------
class EpochEndProbe(L.Callback):
    """At each epoch end: centres, labels and the eval-mode embedding of the whole training set."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.records.append(
            {
                "centers": pl_module.centers.detach().clone(),
                "labels": pl_module.labels.clone(),
                "embedding": eval_embedding(pl_module, trainer.datamodule.dataset.x),
            }
        )


def test_roy_mode_freezes_centres_and_reclusters_each_epoch_end(blobs_datamodule, trainer_kwargs) -> None:
    dm = blobs_datamodule
    module = make_dkm(dm)
    encoder_before = copy.deepcopy(module.encoder.state_dict())
    before, after, batches = EpochEndProbe(), EpochEndProbe(), BatchProbe()
    roy = CentroidReinit(mode="roy", n_init=2, seed=0)
    init = KMeansInit(init="kmeans", n_init=2, seed=0)
    trainer = L.Trainer(max_epochs=3, callbacks=[init, batches, before, roy, after], **trainer_kwargs)
    trainer.fit(module, datamodule=dm)

    assert roy.reinit_count == 3 and roy.interval == 1
    by_epoch = {e: [r for r in batches.records if r["epoch"] == e] for e in range(3)}
    for epoch, records in by_epoch.items():
        assert records and not any(r["requires_grad"] for r in records)
        for rec in records:  # no step moved the centres within the epoch
            assert torch.equal(rec["centers"], records[0]["centers"])
        if epoch > 0:  # ... and the epoch starts from the previous epoch end's k-means centres
            assert torch.equal(records[0]["centers"], after.records[epoch - 1]["centers"])
    for old, new in zip(before.records, after.records, strict=True):
        assert torch.equal(old["centers"], new["centers"]) is False
        # sklearn KMeans with the same seed on the same embedding, renumbered to match the labels
        kmeans = KMeans(K, n_init=2, random_state=0).fit(old["embedding"].double().numpy())
        perm = match_clusters(torch.from_numpy(kmeans.labels_).long(), old["labels"], K)
        expected = torch.empty(K, old["embedding"].shape[1])
        expected[perm] = torch.from_numpy(kmeans.cluster_centers_).float()
        torch.testing.assert_close(new["centers"], expected, atol=1e-5, rtol=0)
    # the encoder did train; the centres never entered the optimizer's state; requires_grad restored
    assert any(not torch.equal(v, module.encoder.state_dict()[k]) for k, v in encoder_before.items())
    assert trainer.optimizers[0].state.get(module.centers) is None
    assert module.centers.requires_grad
    # final labels: nearest of the last k-means centres = k-means labels of the final embedding
    assert torch.equal(module.labels, nearest_centres(module, dm.dataset.x))


def test_centroid_reinit_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="mode"):
        CentroidReinit(mode="brr")
    with pytest.raises(ValueError, match="interval"):
        CentroidReinit(interval=0)
    with pytest.raises(ValueError, match="reset_factor"):
        CentroidReinit(mode="brb", reset_factor=1.5)
    assert CentroidReinit(mode="brb").interval == 20 and CentroidReinit().interval == 1


# --- BRB ----------------------------------------------------------------------------------------
def expected_soft_reset(encoder: nn.Module, factor: float, seed: int) -> dict[str, Tensor]:
    """a * theta + (1 - a) * theta_fresh, theta_fresh = reset_parameters() of each layer in order after manual_seed."""
    layers = resettable_layers(encoder)
    state = {k: v.clone() for k, v in encoder.state_dict().items()}
    torch.manual_seed(seed)
    for name, layer in layers:
        fresh = copy.deepcopy(layer)
        fresh.reset_parameters()
        for pname, value in fresh.named_parameters(recurse=False):
            state[f"{name}.{pname}"] = factor * state[f"{name}.{pname}"] + (1 - factor) * value.detach()
    return state


@pytest.mark.parametrize(
    "make_encoder",
    [
        lambda: MLPEncoder([12, 10, 8, 3]),
        lambda: ConvEncoder((1, 8, 8), channels=(2, 3), kernels=(3, 3), embedding_dim=4),
    ],
    ids=["mlp", "conv"],
)
def test_soft_reset_is_exactly_the_interpolation(make_encoder) -> None:
    torch.manual_seed(1)
    encoder = make_encoder()
    skip = embedding_layer(encoder)
    names = [name for name, _ in resettable_layers(encoder)]
    assert names == (["layers.0", "layers.1"] if isinstance(encoder, MLPEncoder) else ["convs.0", "convs.2"])
    expected = expected_soft_reset(copy.deepcopy(encoder), 0.8, seed=123)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    skip_before = [p.clone() for p in skip.parameters()]
    rng = torch.get_rng_state()
    assert soft_reset(encoder, 0.8, seed=123) == names
    assert torch.equal(torch.get_rng_state(), rng)  # the training RNG stream is untouched
    after = encoder.state_dict()
    for key in after:
        torch.testing.assert_close(after[key], expected[key], atol=1e-7, rtol=0)
        moved = not torch.equal(after[key], before[key])
        assert moved == any(key.startswith(f"{n}.") for n in names), key  # weights and biases of reset layers only
    assert all(torch.equal(a, b) for a, b in zip(skip.parameters(), skip_before, strict=True))
    # factor 1 changes nothing; factor 0 is the fresh draw itself
    soft_reset(encoder, 1.0, seed=7)
    assert all(torch.equal(encoder.state_dict()[k], after[k]) for k in after)
    hard = expected_soft_reset(copy.deepcopy(encoder), 0.0, seed=7)
    soft_reset(encoder, 0.0, seed=7)
    assert all(torch.equal(encoder.state_dict()[k], hard[k]) for k in hard)


class BRBProbe(L.Callback):
    """At each epoch start: encoder and decoder weights, the centres' optimizer state, P, and the embedding."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        state = trainer.optimizers[0].state.get(pl_module.centers)
        decoder = pl_module.decoder
        self.records.append(
            {
                "encoder": copy.deepcopy(pl_module.encoder.state_dict()),
                "decoder": None if decoder is None else copy.deepcopy(decoder.state_dict()),
                "center_state": None if state is None else dict(state),
                "n_states": len(trainer.optimizers[0].state),
                "target_is_none": pl_module.target is None,
                "centers": pl_module.centers.detach().clone(),
                "labels": None if pl_module.labels is None else pl_module.labels.clone(),
                "embedding": eval_embedding(pl_module, trainer.datamodule.dataset.x),
            }
        )


@pytest.mark.parametrize("model", ["dec", "idec", "dkm"])
def test_brb_soft_resets_reclusters_and_clears_centre_state(blobs_datamodule, trainer_kwargs, model: str) -> None:
    dm = blobs_datamodule
    L.seed_everything(0, verbose=False)
    encoder = MLPEncoder([dm.input_dim, 16, 8, 4])
    adam = lambda params: torch.optim.Adam(params, lr=1e-3)  # Adam: the centres have moments to clear
    if model == "dkm":
        module = DKM(encoder, n_clusters=K)
        extra = []
    else:
        module = DEC(encoder, n_clusters=K, optimizer=adam, reconstruction_weight=float(model == "idec"))
        extra = [TargetDistributionRefresh(update_interval=1000)]
    before, after = BRBProbe(), BRBProbe()
    brb = CentroidReinit(mode="brb", interval=2, n_init=2, seed=5)
    callbacks = [KMeansInit(init="kmeans", n_init=2, seed=0), *extra, before, brb, after]
    L.Trainer(max_epochs=3, callbacks=callbacks, **trainer_kwargs).fit(module, datamodule=dm)

    assert brb.reset_count == 1 and brb.reinit_count == 1 and brb.last_reset_seed == 5
    assert brb.last_reset_layers == ["layers.0", "layers.1"]
    for epoch in (0, 1):  # no reset: nothing changes between the probes
        assert all(
            torch.equal(v, after.records[epoch]["encoder"][k]) for k, v in before.records[epoch]["encoder"].items()
        )
    old, new = before.records[2], after.records[2]
    # (1) soft reset: exactly a * theta + (1 - a) * theta_fresh, the embedding layer and decoder untouched
    reference = MLPEncoder([dm.input_dim, 16, 8, 4])
    reference.load_state_dict(old["encoder"])
    expected = expected_soft_reset(reference, 0.8, seed=5)
    for key, value in new["encoder"].items():
        torch.testing.assert_close(value, expected[key], atol=1e-7, rtol=0)
        assert torch.equal(value, old["encoder"][key]) == key.startswith("layers.2."), key
    if old["decoder"] is not None:
        assert all(torch.equal(v, new["decoder"][k]) for k, v in old["decoder"].items())
    # (2) re-clustered: k-means centres of the new embedding, renumbered to the labels before the reset
    kmeans = KMeans(K, n_init=2, random_state=5).fit(new["embedding"].double().numpy())
    perm = match_clusters(torch.from_numpy(kmeans.labels_).long(), old["labels"], K)
    expected_centres = torch.empty(K, 4)
    expected_centres[perm] = torch.from_numpy(kmeans.cluster_centers_).float()
    torch.testing.assert_close(new["centers"], expected_centres, atol=1e-5, rtol=0)
    assert not torch.allclose(new["centers"], old["centers"], atol=1e-3)
    # (3) the centres' optimizer state is gone, the encoder's is kept
    assert old["center_state"] and set(old["center_state"]) >= {"exp_avg", "exp_avg_sq"}
    assert new["center_state"] is None and new["n_states"] == old["n_states"] - 1
    if model != "dkm":
        assert new["target_is_none"]  # P is stale: TargetDistributionRefresh recomputes it at the next step


def test_ablation_benchmark_runs_every_arm_from_one_pretrained_autoencoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """benchmarks/reclustering.py on a few steps of digits: five arms, one pretraining, rows summarised."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import reclustering

    tiny = {"hidden": [32, 10], "batch_size": 256, "pretrain_steps": 16, "cluster_steps": 24, "update_interval": 8,
            "brb_interval": 1}  # fmt: skip
    monkeypatch.setitem(reclustering.SCHEDULES, "digits", tiny)
    rows = reclustering.run("digits", [0])
    assert [r["arm"] for r in rows] == ["dec", "dec_recluster", "dec_brb", "dkm", "dkm_roy"]
    assert len({r["pretrain_seconds"] for r in rows}) == 1  # every arm starts from the same autoencoder
    assert all(0.0 < r["acc"] <= 1.0 for r in rows)
    assert len({round(r["acc"], 6) for r in rows}) > 1  # the arms do differ
    result = {"rows": rows}
    summary = reclustering.summary(result)
    assert set(summary["digits"]) == {r["arm"] for r in rows}
    assert summary["digits"]["dkm"]["acc_mean"] == rows[3]["acc"] and summary["digits"]["dkm"]["seeds"] == [0]
