"""``precision="bf16-mixed"``: training steps run in bf16, the passes that decide the clustering in float32."""

from __future__ import annotations

import functools
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from dec_lightning.callbacks import KMeansInit, TargetDistributionRefresh
from dec_lightning.data import ArrayDataModule
from dec_lightning.encoders import MLPEncoder
from dec_lightning.modules import DEC, AutoencoderPretraining, whole_dataset_pass

BF16 = {"precision": "bf16-mixed"}


class OutputDtypes:
    """Forward hook on the encoder: the dtypes of its outputs, split by train/eval mode."""

    def __init__(self, encoder: nn.Module) -> None:
        self.train: set[torch.dtype] = set()
        self.eval: set[torch.dtype] = set()
        encoder.register_forward_hook(self)

    def __call__(self, module: nn.Module, args: Any, output: Tensor) -> None:
        (self.train if module.training else self.eval).add(output.dtype)


class PassUnderAutocast(L.Callback):
    """At one step, runs the whole-dataset pass inside an explicit bf16 autocast and without one."""

    def __init__(self, at_step: int) -> None:
        self.at_step = at_step
        self.inside: Tensor | None = None
        self.outside: Tensor | None = None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: DEC, *args: Any) -> None:
        if trainer.global_step == self.at_step:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                self.inside, _ = whole_dataset_pass(trainer, pl_module, pl_module.forward)
            self.outside, _ = whole_dataset_pass(trainer, pl_module, pl_module.forward)


def test_bf16_mixed_trains_in_bf16_and_decides_in_float32(blobs, blobs_datamodule, trainer_kwargs) -> None:
    L.seed_everything(0, verbose=False)
    encoder = MLPEncoder([blobs_datamodule.input_dim, 16, 4])
    dtypes = OutputDtypes(encoder)
    model = DEC(encoder, n_clusters=4)
    probe = PassUnderAutocast(at_step=5)
    callbacks = [KMeansInit(init="kmeans", n_init=5), TargetDistributionRefresh(update_interval=4), probe]
    L.Trainer(max_steps=12, callbacks=callbacks, **trainer_kwargs, **BF16).fit(model, datamodule=blobs_datamodule)

    assert dtypes.train == {torch.bfloat16}  # the training steps did run under autocast
    assert dtypes.eval == {torch.float32}  # k-means input, P refreshes and final labels did not
    assert probe.inside.dtype == torch.float32
    assert torch.equal(probe.inside, probe.outside)  # an enclosing autocast region changes nothing
    assert model.target.dtype == torch.float32
    x = torch.from_numpy(blobs[0])
    model.eval()
    with torch.no_grad():
        assert torch.equal(model.labels, model(x).argmax(dim=1))  # final labels = a float32 forward


def test_bf16_mixed_pretraining_learns(blobs, trainer_kwargs) -> None:
    """Pretraining under bf16-mixed lowers the loss about as much as float32 (params and optimizer stay float32)."""
    x, _ = blobs
    losses = {}
    for precision in ("32-true", "bf16-mixed"):
        L.seed_everything(0, verbose=False)
        adam = functools.partial(torch.optim.Adam, lr=1e-3)  # blobs are unscaled: SGD 0.1 diverges in any precision
        module = AutoencoderPretraining(MLPEncoder([x.shape[1], 32, 4]), finetune_steps=150, optimizer=adam)
        dm = ArrayDataModule(x, batch_size=32)
        L.Trainer(max_steps=150, precision=precision, **trainer_kwargs).fit(module, datamodule=dm)
        assert all(p.dtype == torch.float32 for p in module.parameters())
        with torch.no_grad():
            xt = torch.from_numpy(x)
            losses[precision] = float(((module.decoder(module.encoder(xt)) - xt) ** 2).sum(1).mean())
    initial = float((torch.from_numpy(x) ** 2).sum(1).mean())  # the loss of a zero reconstruction, for scale
    assert losses["bf16-mixed"] < 0.5 * initial
    assert abs(losses["bf16-mixed"] - losses["32-true"]) < 0.1 * losses["32-true"]
