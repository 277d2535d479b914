"""Stacked denoising autoencoder pretraining: greedy layer-wise, then end-to-end (DEC sec. 3.2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR

from dec_lightning.encoders.mlp import MLPDecoder, MLPEncoder, mirror_decoder
from dec_lightning.modules.optim import sdae_sgd
from dec_lightning.modules.reduction import sample_weights, weighted_mse


def schedule_phase(step: int, num_layers: int, layerwise_steps: int) -> tuple[int, int]:
    """``(layer, step within phase)`` of a global step; layer -1 is end-to-end fine-tuning."""
    greedy = num_layers * layerwise_steps
    if step < greedy:
        return step // layerwise_steps, step % layerwise_steps
    return -1, step - greedy


@dataclass
class PhaseStepDecay:
    """Learning-rate factor ``decay ** (step within phase // decay_steps)``: every phase restarts it.

    A dataclass rather than a closure so that the scheduler state can be checkpointed.
    """

    num_layers: int
    layerwise_steps: int
    decay_steps: int | None
    decay: float

    def __call__(self, step: int) -> float:
        if not self.decay_steps:
            return 1.0
        return self.decay ** (schedule_phase(step, self.num_layers, self.layerwise_steps)[1] // self.decay_steps)


class AutoencoderPretraining(L.LightningModule):
    """Trains ``decoder(encoder(x)) ≈ x``; the encoder is then handed to `DEC`.

    Training runs in phases counted in optimizer steps: for each encoder layer k,
    ``layerwise_steps`` steps of a one-layer denoising autoencoder that reconstructs the
    (clean, frozen) output of layers < k from a dropout-corrupted copy (DEC eqs. 5-8);
    then ``finetune_steps`` steps of the whole autoencoder. Every phase starts with fresh
    optimizer state and its own learning-rate schedule, as if trained separately.

    Args:
        encoder: maps x -> z. Layer-wise training needs an `MLPEncoder`.
        decoder: maps z -> x̂; default: the mirror of an `MLPEncoder`.
        layerwise_steps: steps per layer in the greedy phase (0 skips it; paper: 50 000).
        finetune_steps: steps of end-to-end fine-tuning (paper: 100 000).
        dropout: corruption rate of the greedy phase, on the input and the hidden layer (paper: 0.2).
        finetune_dropout: input corruption during fine-tuning (paper: none).
        optimizer: builds the optimizer from the parameters (default: SGD lr 0.1, momentum 0.9).
        lr_decay_steps: divide the learning rate by ``1 / lr_decay`` every this many steps of a
            phase (paper: 20 000); None keeps it constant.
        lr_decay: factor of that decay (paper: 0.1).
        augment: transform of the training batches' features (e.g. `RandomShiftRotate`, DEC-DA):
            the autoencoder learns to reconstruct augmented samples.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module | None = None,
        layerwise_steps: int = 0,
        finetune_steps: int = 1000,
        dropout: float = 0.2,
        finetune_dropout: float = 0.0,
        optimizer: OptimizerCallable = sdae_sgd,
        lr_decay_steps: int | None = None,
        lr_decay: float = 0.1,
        augment: nn.Module | None = None,
    ) -> None:
        super().__init__()
        # modules are saved as weights; the optimizer factory is code, and pickling it would make
        # the checkpoint unreadable with torch.load(weights_only=True)
        self.save_hyperparameters(ignore=["encoder", "decoder", "optimizer", "augment"])
        if decoder is None:
            decoder = mirror_decoder(encoder)
        if layerwise_steps > 0 and not (isinstance(encoder, MLPEncoder) and isinstance(decoder, MLPDecoder)):
            raise ValueError("layer-wise pretraining needs MLPEncoder and MLPDecoder; set layerwise_steps: 0")
        if layerwise_steps < 0 or finetune_steps < 0 or layerwise_steps + finetune_steps == 0:
            raise ValueError("layerwise_steps and finetune_steps must be >= 0 and not both 0")
        # kept as an attribute: Lightning drops unpicklable hparams (lambdas) before fit
        self.optimizer_factory = optimizer
        self.encoder = encoder
        self.decoder = decoder
        self.augment = augment
        self.num_layers = len(encoder.layers) if layerwise_steps > 0 else 0

    @property
    def total_steps(self) -> int:
        """Optimizer steps of the whole schedule; the Trainer's ``max_steps`` should match."""
        return self.num_layers * self.hparams.layerwise_steps + self.hparams.finetune_steps

    def phase(self, step: int) -> tuple[int, int]:
        """``(layer, step within phase)`` for a global step; layer -1 is end-to-end fine-tuning."""
        return schedule_phase(step, self.num_layers, self.hparams.layerwise_steps)

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))

    def corrupt(self, x: Tensor, p: float, site: int = 0) -> Tensor:
        """Dropout (DEC eq. 5) whose masks do not depend on the number of processes.

        The mask of the whole global batch is drawn from a generator seeded by the run's seed,
        the step and the corruption ``site``, the same on every process, and each process keeps
        the rows of its own samples (a `DistributedSampler` deals rank r the rows r, r + W, ...):
        W processes corrupt each sample exactly as one process would, whatever else draws
        from the global RNG.
        """
        if not self.training or p == 0:
            return x
        trainer = self._trainer
        world, rank, step = (trainer.world_size, trainer.global_rank, trainer.global_step) if trainer else (1, 0, 0)
        seed = (torch.initial_seed() * 1_000_003 + step * 8 + site) % 2**63
        generator = torch.Generator(device=x.device).manual_seed(seed)
        keep = torch.rand((len(x) * world, *x.shape[1:]), generator=generator, device=x.device)[rank::world] >= p
        return x * keep / (1 - p)

    def layerwise_loss(self, x: Tensor, k: int, weights: Tensor | None = None) -> Tensor:
        """Denoising loss of layer pair k on the clean output of the frozen layers below (DEC eqs. 5-8).

        ``weights``: per-sample weights of the batch mean (`sample_weights`); default the plain mean.
        """
        p = self.hparams.dropout
        with torch.no_grad():
            for j in range(k):
                x = self.encoder.layer(j, x)
        hidden = self.corrupt(self.encoder.layer(k, self.corrupt(x, p, site=0)), p, site=1)
        return weighted_mse(self.decoder.layer(k, hidden), x, weights)

    def finetune_loss(self, x: Tensor, weights: Tensor | None = None) -> Tensor:
        return weighted_mse(self(self.corrupt(x, self.hparams.finetune_dropout)), x, weights)

    def on_fit_start(self) -> None:
        max_steps = self.trainer.max_steps
        if max_steps != -1 and max_steps < self.total_steps:
            raise ValueError(
                f"Trainer max_steps={max_steps} ends before the pretraining schedule "
                f"({self.total_steps} steps); set max_steps to {self.total_steps}"
            )

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> int | None:
        step = self.trainer.global_step
        if step >= self.total_steps:
            self.trainer.should_stop = True
            return -1
        if self.phase(step)[1] == 0:
            self.optimizers().optimizer.state.clear()
        return None

    def training_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> Tensor:
        x = batch[0] if self.augment is None else self.augment(batch[0])
        weights = sample_weights(self, batch[2])  # the global batch's mean, also under DDP
        layer, _ = self.phase(self.trainer.global_step)
        loss = self.finetune_loss(x, weights) if layer < 0 else self.layerwise_loss(x, layer, weights)
        self.log("pretrain/loss", loss, prog_bar=True)
        self.log("pretrain/phase", float(layer), prog_bar=False)
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = self.optimizer_factory(self.parameters())
        hp = self.hparams
        scheduler = LambdaLR(
            optimizer, PhaseStepDecay(self.num_layers, hp.layerwise_steps, hp.lr_decay_steps, hp.lr_decay)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
