"""Autoencoder pretraining: phase schedule, greedy layer-wise updates, optimizer resets, lr decay."""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dec_lightning.data import DigitsDataModule
from dec_lightning.encoders import MLPDecoder, MLPEncoder
from dec_lightning.encoders.mlp import mirror_decoder
from dec_lightning.modules import AutoencoderPretraining
from dec_lightning.modules.pretrain import PhaseStepDecay, schedule_phase


# --- schedule -----------------------------------------------------------------------------------
def test_schedule_phase() -> None:
    # 3 layers x 10 steps of greedy training, then fine-tuning
    expected = {0: (0, 0), 9: (0, 9), 10: (1, 0), 19: (1, 9), 20: (2, 0), 29: (2, 9), 30: (-1, 0), 47: (-1, 17)}
    for step, phase in expected.items():
        assert schedule_phase(step, 3, 10) == phase
    # no greedy phase: everything is fine-tuning
    assert [schedule_phase(s, 0, 0) for s in (0, 5)] == [(-1, 0), (-1, 5)]


def test_total_steps_and_phase_method() -> None:
    module = AutoencoderPretraining(MLPEncoder([8, 6, 4, 2]), layerwise_steps=7, finetune_steps=11)
    assert module.num_layers == 3
    assert module.total_steps == 3 * 7 + 11
    assert module.phase(20) == (2, 6) and module.phase(21) == (-1, 0)
    finetune_only = AutoencoderPretraining(MLPEncoder([8, 6, 4, 2]), layerwise_steps=0, finetune_steps=11)
    assert finetune_only.total_steps == 11
    assert finetune_only.phase(3) == (-1, 3)


def test_invalid_schedules() -> None:
    with pytest.raises(ValueError, match="not both 0"):
        AutoencoderPretraining(MLPEncoder([8, 4]), layerwise_steps=0, finetune_steps=0)
    with pytest.raises(ValueError, match=">= 0"):
        AutoencoderPretraining(MLPEncoder([8, 4]), layerwise_steps=-1)


def test_phase_step_decay_restarts_every_phase() -> None:
    decay = PhaseStepDecay(num_layers=2, layerwise_steps=10, decay_steps=4, decay=0.1)
    factors = [decay(s) for s in range(30)]
    one_phase = [1.0] * 4 + [0.1] * 4 + [0.01] * 2  # steps 0-9 of a 10-step phase
    torch.testing.assert_close(torch.tensor(factors[:20]), torch.tensor(one_phase * 2))
    # fine-tuning (from step 20) restarts the decay and keeps going past 10 steps
    torch.testing.assert_close(torch.tensor(factors[20:]), torch.tensor(one_phase))
    assert decay(20 + 12) == pytest.approx(1e-3)
    assert PhaseStepDecay(2, 10, None, 0.1)(25) == 1.0


# --- training-time behaviour --------------------------------------------------------------------
class StepProbe(L.Callback):
    """Per optimizer step: parameters before/after, optimizer state seen by the step, the lr used."""

    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.current = {
            "step": trainer.global_step,
            "before": {k: v.detach().clone() for k, v in pl_module.named_parameters()},
        }

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        state = optimizer.state
        self.current["state_steps"] = {
            k: float(state[p]["step"]) if p in state and "step" in state[p] else 0.0
            for k, p in pl_module.named_parameters()
        }
        self.current["lr"] = optimizer.param_groups[0]["lr"]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.current["after"] = {k: v.detach().clone() for k, v in pl_module.named_parameters()}
        self.steps.append(self.current)


def layer_of(name: str) -> int:
    """'encoder.layers.2.weight' -> 2."""
    return int(name.split(".")[2])


@pytest.fixture(scope="module")
def digits() -> DigitsDataModule:
    dm = DigitsDataModule(batch_size=64)
    dm.setup("fit")
    return dm


@pytest.fixture(scope="module")
def layerwise_run(digits, trainer_kwargs) -> tuple[AutoencoderPretraining, StepProbe, L.Trainer]:
    """3 layers x 4 greedy steps + 4 fine-tuning steps with Adam and a per-phase lr decay every 2 steps."""
    L.seed_everything(0, verbose=False)
    module = AutoencoderPretraining(
        MLPEncoder([64, 32, 16, 8]),
        layerwise_steps=4,
        finetune_steps=4,
        optimizer=partial(torch.optim.Adam, lr=1e-2),
        lr_decay_steps=2,
        lr_decay=0.5,
    )
    probe = StepProbe()
    trainer = L.Trainer(max_steps=module.total_steps, callbacks=[probe], **trainer_kwargs)
    trainer.fit(module, datamodule=digits)
    return module, probe, trainer


def test_greedy_phase_updates_only_its_layer(layerwise_run) -> None:
    module, probe, trainer = layerwise_run
    assert trainer.global_step == module.total_steps == 16
    assert [s["step"] for s in probe.steps] == list(range(16))
    for record in probe.steps:
        layer, _ = module.phase(record["step"])
        for name, before in record["before"].items():
            changed = not torch.equal(before, record["after"][name])
            should_change = layer == -1 or layer_of(name) == layer
            assert changed == should_change, (record["step"], layer, name)


def test_optimizer_state_reset_at_each_phase_start(layerwise_run) -> None:
    """Adam's per-parameter step count restarts at 1 in every phase, as if each phase were a fresh run."""
    module, probe, _ = layerwise_run
    for record in probe.steps:
        layer, within = module.phase(record["step"])
        for name, count in record["state_steps"].items():
            trained = layer == -1 or layer_of(name) == layer
            # state as the optimizer step finds it: `within` earlier steps of this phase, none before it
            expected = float(within) if trained else 0.0
            assert count == expected, (record["step"], name)


def test_lr_decays_within_each_phase(layerwise_run) -> None:
    module, probe, _ = layerwise_run
    decay = PhaseStepDecay(module.num_layers, 4, 2, 0.5)
    lrs = [s["lr"] for s in probe.steps]
    assert lrs == pytest.approx([1e-2 * decay(s) for s in range(16)])
    assert lrs[:4] == pytest.approx([1e-2, 1e-2, 5e-3, 5e-3])
    assert lrs[4] == pytest.approx(1e-2)  # restarted by the next phase


def test_layerwise_loss_reconstructs_frozen_lower_output(digits) -> None:
    """Layer k's denoising target is the clean output of layers < k (DEC eqs. 5-8), not the input."""
    torch.manual_seed(0)
    encoder = MLPEncoder([64, 32, 16])
    module = AutoencoderPretraining(encoder, MLPDecoder([64, 32, 16]), layerwise_steps=1, dropout=0.0)
    module.eval()
    x = digits.dataset.x[:100]
    h = encoder.layer(0, x)
    expected = F.mse_loss(module.decoder.layer(1, encoder.layer(1, h)), h)
    torch.testing.assert_close(module.layerwise_loss(x, 1), expected)
    torch.testing.assert_close(module.finetune_loss(x), F.mse_loss(module(x), x))


def test_reconstruction_loss_decreases_on_digits(digits, trainer_kwargs) -> None:
    L.seed_everything(0, verbose=False)
    module = AutoencoderPretraining(
        MLPEncoder([64, 32, 10]), finetune_steps=200, optimizer=partial(torch.optim.Adam, lr=1e-3)
    )
    x = digits.dataset.x

    def full_mse() -> float:
        with torch.no_grad():
            return F.mse_loss(module(x), x).item()

    before = full_mse()
    trainer = L.Trainer(max_steps=-1, max_epochs=1000, **trainer_kwargs)
    trainer.fit(module, datamodule=digits)
    after = full_mse()
    assert trainer.global_step == 200  # the schedule ends training by itself
    assert after < 0.4 * before, (before, after)


def test_max_steps_shorter_than_schedule_is_an_error(digits, trainer_kwargs) -> None:
    module = AutoencoderPretraining(MLPEncoder([64, 8]), finetune_steps=10)
    with pytest.raises(ValueError, match="max_steps to 10"):
        L.Trainer(max_steps=5, **trainer_kwargs).fit(module, datamodule=digits)


def test_layerwise_needs_mlp() -> None:
    class Enc(torch.nn.Module):
        pass

    with pytest.raises(ValueError, match="decoder"):
        AutoencoderPretraining(Enc(), layerwise_steps=0)
    with pytest.raises(ValueError, match="layer-wise"):
        AutoencoderPretraining(MLPEncoder([8, 4]), decoder=torch.nn.Linear(4, 8), layerwise_steps=3)


def test_glorot_uniform_init_matches_keras_bounds() -> None:
    """Keras' glorot_uniform: |w| <= sqrt(6 / (fan_in + fan_out)), variance l^2 / 3, zero bias; the decoder too."""
    torch.manual_seed(0)
    encoder = MLPEncoder([784, 500, 2000, 10], init="glorot_uniform")
    decoder = mirror_decoder(encoder)
    for layer in [*encoder.layers, *decoder.layers]:
        fan_out, fan_in = layer.weight.shape
        bound = math.sqrt(6 / (fan_in + fan_out))  # 784 -> 500: 0.0676; PyTorch's own: 1/sqrt(784) = 0.0357
        w = layer.weight.detach()
        assert w.abs().max() <= bound and w.abs().max() > 0.99 * bound
        assert abs(w.var().item() / (bound**2 / 3) - 1) < 0.05
        assert torch.count_nonzero(layer.bias) == 0


def test_pytorch_init_is_unchanged_by_the_option() -> None:
    """The default draws exactly what nn.Linear draws, so earlier seeds reproduce; a typo is refused."""
    torch.manual_seed(0)
    default = MLPEncoder([64, 32, 10])
    torch.manual_seed(0)
    plain = [nn.Linear(64, 32), nn.Linear(32, 10)]
    assert all(torch.equal(a.weight, b.weight) for a, b in zip(default.layers, plain, strict=True))
    with pytest.raises(ValueError, match="glorot_uniform"):
        MLPEncoder([64, 10], init="glorot")
