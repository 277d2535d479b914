"""Beyond DEC: conv autoencoder, IDEC objective, training-only augmentation, and their configs."""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import REPO_ROOT
from torch import Tensor, nn

from dec_lightning.callbacks import KMeansInit, TargetDistributionRefresh
from dec_lightning.cli.main import run_cli
from dec_lightning.data import ArrayDataModule
from dec_lightning.data.augment import RandomShiftRotate
from dec_lightning.data.validation import ConfigError
from dec_lightning.encoders import ConvDecoder, ConvEncoder, MLPEncoder
from dec_lightning.modules import DEC, AutoencoderPretraining
from dec_lightning.modules.dec import load_encoder_weights

TINY = {"channels": [4, 8, 8], "kernels": [5, 5, 3], "embedding_dim": 3}


@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 16, 16), (2, 7, 9)])
def test_conv_autoencoder_shapes_and_contract(shape: tuple[int, int, int]) -> None:
    encoder, decoder = ConvEncoder(shape, **TINY), ConvDecoder(shape, **TINY)
    d = int(np.prod(shape))
    assert (encoder.input_dim, encoder.embedding_dim) == (d, 3)
    x = torch.rand(5, d)
    z = encoder(x)
    assert z.shape == (5, 3)
    assert decoder(z).shape == (5, d)  # odd sizes (7, 9) round-trip through output_padding
    DEC(encoder, n_clusters=2)  # the encoder contract DEC checks


def test_conv_encoder_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="channels, height, width"):
        ConvEncoder((28, 28))
    with pytest.raises(ValueError, match="same, positive"):
        ConvEncoder((1, 8, 8), channels=[4, 4], kernels=[3])


def test_conv_encoder_reports_data_mismatch(trainer_kwargs: dict[str, Any]) -> None:
    model = DEC(ConvEncoder((1, 4, 4), **TINY), n_clusters=2)
    data = ArrayDataModule(np.random.default_rng(0).random((20, 17), dtype=np.float32))
    with pytest.raises(ConfigError, match="17 features but the encoder expects 16"):
        L.Trainer(max_steps=1, **trainer_kwargs).fit(model, datamodule=data)


def _model_with_target(
    reconstruction: float, decoder: bool = True, n: int = 12, clustering: float = 1.0
) -> tuple[DEC, Tensor, Tensor]:
    torch.manual_seed(0)
    shape = (1, 8, 8)
    model = DEC(
        ConvEncoder(shape, **TINY),
        n_clusters=3,
        decoder=ConvDecoder(shape, **TINY) if decoder else None,
        reconstruction_weight=reconstruction,
        clustering_weight=clustering,
    )
    model.centers.data.normal_()
    p = torch.rand(n, 3)
    model.target = p / p.sum(dim=1, keepdim=True)
    return model, torch.rand(n, 64), torch.arange(n)


def _step(model: DEC, x: Tensor, index: Tensor) -> Tensor:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*self.log.*")  # no trainer attached: logging is skipped
        return model.training_step((x, torch.zeros_like(index), index), 0)


def _hand_kl_and_mse(model: DEC, x: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
    z = model.encoder(x)
    q = (1 + ((z[:, None, :] - model.centers[None]) ** 2).sum(-1)) ** -1  # Student's t, alpha = 1 (DEC eq. 1)
    q = q / q.sum(dim=1, keepdim=True)
    p = model.target[index]
    return (p * (p / q).log()).sum(dim=1).mean(), ((model.decoder(z) - x) ** 2).mean()


def test_idec_loss_is_mse_plus_gamma_kl() -> None:
    """IDEC eq. 3, L = L_r + gamma * L_c, as its code's loss_weights=[gamma, 1] on [kld, mse]."""
    model, x, index = _model_with_target(reconstruction=1.0, clustering=0.1)
    kl, mse = _hand_kl_and_mse(model, x, index)
    assert float(mse.detach()) > 0.01 and float(kl.detach()) > 0.01  # neither term is negligible here
    torch.testing.assert_close(_step(model, x, index), 0.1 * kl + mse)
    terms = model.loss_terms(x, index)
    torch.testing.assert_close(terms["kl"], kl)
    torch.testing.assert_close(terms["reconstruction"], mse)


def test_loss_weights_each_scale_their_term() -> None:
    """The weights are explicit: KL + 0.1 * MSE (this package's earlier 'IDEC') is its own setting."""
    model, x, index = _model_with_target(reconstruction=0.1, clustering=1.0)
    kl, mse = _hand_kl_and_mse(model, x, index)
    torch.testing.assert_close(_step(model, x, index), kl + 0.1 * mse)
    with pytest.raises(ConfigError, match="clustering_weight must be > 0"):
        _model_with_target(reconstruction=1.0, clustering=0.0)


def test_reconstruction_weight_zero_is_plain_dec() -> None:
    idec, x, index = _model_with_target(reconstruction=0.0)
    plain, _, _ = _model_with_target(reconstruction=0.0, decoder=False)
    plain.load_state_dict(idec.state_dict())  # same encoder and centres (the decoder drew from the RNG)
    plain.target = idec.target
    assert idec.decoder is None  # a decoder given with reconstruction_weight 0 is dropped: no extra parameters
    assert sum(p.numel() for p in idec.parameters()) == sum(p.numel() for p in plain.parameters())
    expected = F.kl_div(plain(x).log(), plain.target[index], reduction="batchmean")
    torch.testing.assert_close(_step(idec, x, index), _step(plain, x, index))
    torch.testing.assert_close(_step(plain, x, index), expected)


def test_idec_needs_decoder_for_conv_but_mirrors_mlp() -> None:
    with pytest.raises(ConfigError, match="needs a decoder"):
        DEC(ConvEncoder((1, 8, 8), **TINY), reconstruction_weight=0.1)
    model = DEC(MLPEncoder([16, 8, 3]), n_clusters=2, reconstruction_weight=0.1)
    assert model.decoder(torch.zeros(1, 3)).shape == (1, 16)


def test_decoder_weights_load_from_pretraining_checkpoint(tmp_path: Path) -> None:
    decoder = ConvDecoder((1, 8, 8), **TINY)
    trained = ConvDecoder((1, 8, 8), **TINY)
    path = tmp_path / "pretrain.ckpt"
    torch.save({"state_dict": {f"decoder.{k}": v for k, v in trained.state_dict().items()}}, path)
    load_encoder_weights(decoder, path, prefix="decoder")
    for a, b in zip(decoder.state_dict().values(), trained.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    torch.save(trained.state_dict(), tmp_path / "plain.pt")
    with pytest.raises(ConfigError, match="needs the pretraining checkpoint"):
        load_encoder_weights(decoder, tmp_path / "plain.pt", prefix="decoder")


def test_random_shift_rotate() -> None:
    torch.manual_seed(0)
    x = torch.rand(16, 2 * 8 * 8)
    identity = RandomShiftRotate((2, 8, 8), max_rotation=0.0, max_shift=0.0)
    torch.testing.assert_close(identity(x), x, atol=1e-5, rtol=0)
    out = RandomShiftRotate((2, 8, 8))(x)
    assert out.shape == x.shape
    assert (out - x).abs().mean(dim=1).min() > 0.01  # every sample moved
    # a pure 1-pixel shift (an eighth of 8 pixels, grid-aligned) moves the image by one pixel
    img = torch.zeros(1, 1, 8, 8)
    img[0, 0, 3, 3] = 1.0
    shifted = RandomShiftRotate((1, 8, 8), max_rotation=0.0, max_shift=0.125)
    torch.manual_seed(1)
    moved = shifted(img.flatten(1)).reshape(8, 8)
    assert abs(float(moved.sum()) - 1.0) < 0.5 and float(moved[3, 3]) < 1.0


class Probe(nn.Module):
    """Wraps an encoder and records its inputs, with the mode they came in."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.embedding_dim, self.input_dim = inner.embedding_dim, inner.input_dim
        self.calls: list[tuple[bool, Tensor]] = []

    def forward(self, x: Tensor) -> Tensor:
        self.calls.append((self.training, x.detach().clone()))
        return self.inner(x)


class BatchIndex(L.Callback):
    def __init__(self) -> None:
        self.indices: list[Tensor] = []

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, i: int) -> None:
        self.indices.append(batch[2].clone())


@pytest.mark.parametrize("augment", [True, False])
def test_augmentation_only_in_training_batches(augment: bool, trainer_kwargs: dict[str, Any]) -> None:
    """Training steps see augmented batches; P, k-means and final assignments see the dataset as is."""
    L.seed_everything(0, verbose=False)
    shape = (1, 8, 8)
    x = np.random.default_rng(0).random((48, 64), dtype=np.float32)
    aug = RandomShiftRotate(shape) if augment else None
    data = ArrayDataModule(x, batch_size=16)
    clean = torch.from_numpy(x)

    probe = Probe(ConvEncoder(shape, **TINY))
    pretrain = AutoencoderPretraining(probe, ConvDecoder(shape, **TINY), finetune_steps=3, augment=aug)
    seen = BatchIndex()
    L.Trainer(max_steps=3, callbacks=[seen], **trainer_kwargs).fit(pretrain, datamodule=data)
    train_inputs = [x_ for training, x_ in probe.calls if training]
    assert len(train_inputs) == 3
    for inp, index in zip(train_inputs, seen.indices, strict=True):
        diff = (inp - clean[index]).abs().mean(dim=1)
        assert bool((diff > 0.01).all()) if augment else bool((diff == 0).all())

    probe.calls.clear()
    model = DEC(probe, n_clusters=3, decoder=pretrain.decoder, reconstruction_weight=0.1, augment=aug)
    seen = BatchIndex()
    callbacks = [KMeansInit(init="kmeans", n_init=2), TargetDistributionRefresh(update_interval=2), seen]
    L.Trainer(max_steps=5, callbacks=callbacks, **trainer_kwargs).fit(model, datamodule=data)
    train_inputs = [x_ for training, x_ in probe.calls if training]
    eval_inputs = torch.cat([x_ for training, x_ in probe.calls if not training])
    assert len(train_inputs) == 5
    for inp, index in zip(train_inputs, seen.indices, strict=True):
        diff = (inp - clean[index]).abs().mean(dim=1)
        assert bool((diff > 0.01).all()) if augment else bool((diff == 0).all())
    # k-means once, P at steps 0, 2, 4, final assignment: 5 whole-dataset passes, all clean
    assert eval_inputs.shape == (5 * 48, 64)
    torch.testing.assert_close(eval_inputs, clean.repeat(5, 1), atol=0, rtol=0)


CONFIGS = ["mnist_conv_idec_aug.yaml", "usps_conv_idec_aug.yaml"]


def _tiny_config(tmp_path: Path, name: str) -> tuple[Path, int]:
    """The config with its data swapped for 30 random images of the right size (fast, no dataset needed)."""
    config = yaml.safe_load((REPO_ROOT / "configs" / name).read_text())
    encoder = config["encoder"]["init_args"]
    d = int(np.prod(encoder["image_shape"])) if "image_shape" in encoder else encoder["dims"][0]
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((30, d), dtype=np.float32))
    config["data"] = {
        "class_path": "dec_lightning.data.ArrayDataModule",
        "init_args": {"data": str(tmp_path / "x.npy"), "batch_size": 10},
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path, d


@pytest.mark.parametrize("name", CONFIGS)
def test_config_builds_conv_idec_aug_and_copies_decoder(name: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    path, d = _tiny_config(tmp_path, name)
    cli = run_cli(
        ["pretrain", "--config", str(path), "--pretrain.finetune_steps", "2", "--trainer.accelerator", "cpu",
         "--trainer.logger", "false", "--trainer.enable_checkpointing", "false", "--trainer.enable_progress_bar", "false"]
    )  # fmt: skip
    model, pretraining = cli.model, cli.config_init["pretrain"]
    assert isinstance(model.encoder, ConvEncoder) and model.encoder.input_dim == d
    assert isinstance(model.decoder, ConvDecoder) and isinstance(pretraining.decoder, ConvDecoder)
    assert model.decoder is not pretraining.decoder  # built twice from one config, weights copied
    assert (model.hparams.clustering_weight, model.hparams.reconstruction_weight) == (0.1, 1.0)  # IDEC
    assert isinstance(model.augment, RandomShiftRotate) and isinstance(pretraining.augment, RandomShiftRotate)
    for a, b in zip(model.decoder.state_dict().values(), pretraining.decoder.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    # the checkpoint's hyperparameters hold the decoder's config, not a pickled module
    assert model.hparams.decoder["class_path"] == "dec_lightning.encoders.ConvDecoder"


def test_mnist_mlp_idec_aug_config_builds_and_copies_decoder(tmp_path: Path, monkeypatch) -> None:
    """FcIDEC-DA: the paper's MLP with a greedy phase, augmentation in both stages, IDEC keeping the mirror decoder."""
    monkeypatch.chdir(tmp_path)
    path, d = _tiny_config(tmp_path, "mnist_fast_idec_aug.yaml")
    cli = run_cli(
        ["pretrain", "--config", str(path), "--pretrain.layerwise_steps", "1", "--pretrain.finetune_steps", "1",
         "--trainer.logger", "false", "--trainer.enable_checkpointing", "false", "--trainer.enable_progress_bar", "false"]
    )  # fmt: skip
    model, pretraining = cli.model, cli.config_init["pretrain"]
    assert d == 784 and isinstance(model.encoder, MLPEncoder) and model.encoder.dims == [784, 500, 500, 2000, 10]
    assert pretraining.total_steps == 4 + 1  # one greedy step per layer, one end-to-end step
    assert (model.hparams.clustering_weight, model.hparams.reconstruction_weight) == (0.1, 1.0)  # IDEC
    for augment in (model.augment, pretraining.augment):
        assert isinstance(augment, RandomShiftRotate) and augment.image_shape == (1, 28, 28)
    assert model.decoder is not None and model.decoder is not pretraining.decoder
    for a, b in zip(model.decoder.state_dict().values(), pretraining.decoder.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO_ROOT / "configs").glob("*.yaml")))
def test_config_data_section_parses(name: str, capsys: pytest.CaptureFixture) -> None:
    config = yaml.safe_load((REPO_ROOT / "configs" / name).read_text())
    module, _, cls = config["data"]["class_path"].rpartition(".")
    if not hasattr(importlib.import_module(module), cls):
        pytest.skip(f"{config['data']['class_path']} is not in this checkout (added by the datasets branch)")
    with pytest.raises(SystemExit):
        run_cli(["run", "--config", str(REPO_ROOT / "configs" / name), "--print_config"])
    assert cls in capsys.readouterr().out


@pytest.mark.parametrize(
    ("name", "weights", "optimizer"),
    [
        ("mnist_fast_idec_aug.yaml", (0.1, 1.0), "torch.optim.Adam"),  # IDEC.py: Adam on MNIST
        ("mnist_cpu_best.yaml", (0.1, 1.0), "torch.optim.Adam"),
        ("mnist_conv_idec_aug.yaml", (0.1, 1.0), "torch.optim.Adam"),
        ("usps_conv_idec_aug.yaml", (0.1, 1.0), "torch.optim.SGD"),  # IDEC.py: SGD 0.1, momentum 0.99
        ("mnist_fast_kl_rec_aug.yaml", (1.0, 0.1), "torch.optim.SGD"),  # not IDEC: KL + 0.1 MSE
    ],
)
def test_configs_state_their_objective(name: str, weights: tuple[float, float], optimizer: str) -> None:
    """Configs named IDEC use IDEC's weighting (gamma on KL); the other weighting has its own name."""
    model = yaml.safe_load((REPO_ROOT / "configs" / name).read_text())["model"]
    assert (model["clustering_weight"], model["reconstruction_weight"]) == weights
    assert model["optimizer"]["class_path"] == optimizer
    assert "idec" not in name or weights == (0.1, 1.0)
