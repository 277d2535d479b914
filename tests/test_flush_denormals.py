"""`FlushDenormals`: subnormals read as zero during a fit and only then; the CLI gives it to pretraining too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch

from dec_lightning.callbacks import FlushDenormals, KMeansInit, PhaseProgress
from dec_lightning.cli.common import pretraining_callbacks
from dec_lightning.cli.main import run_cli
from dec_lightning.encoders import MLPEncoder
from dec_lightning.modules import AutoencoderPretraining
from tests.test_pipeline import cli_args

SUBNORMAL = 1e-39  # below float32's smallest normal, 1.18e-38
pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter is intended")


def flushes() -> bool:
    """Whether this thread now treats a float32 subnormal as zero (x86 DAZ)."""
    return (torch.tensor([SUBNORMAL]) * 1.0).item() == 0.0


@pytest.fixture(autouse=True)
def _restore():
    yield
    torch.set_flush_denormal(False)


def test_subnormal_survives_by_default() -> None:
    assert not flushes(), "a test left denormal flushing on"
    assert 0.0 < (torch.tensor([SUBNORMAL]) * 1.0).item() < torch.finfo(torch.float32).tiny


class _Seen(L.Callback):
    def __init__(self) -> None:
        self.during: list[bool] = []

    def on_train_batch_end(self, *args: Any) -> None:
        self.during.append(flushes())


def test_flushes_during_fit_and_not_after(blobs_datamodule, trainer_kwargs) -> None:
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush denormals (not x86 with SSE3)")
    torch.set_flush_denormal(False)
    seen = _Seen()
    module = AutoencoderPretraining(MLPEncoder([16, 8, 2]), finetune_steps=3)
    flush = FlushDenormals()
    trainer = L.Trainer(max_steps=3, callbacks=[flush, seen], **trainer_kwargs)
    trainer.fit(module, datamodule=blobs_datamodule)
    assert seen.during == [True, True, True]
    assert not flushes() and not flush.active


def test_pretraining_takes_only_flush_denormals() -> None:
    flush = FlushDenormals()
    trainer = L.Trainer(callbacks=[KMeansInit(init="kmeans", n_init=1), flush], logger=False, enable_progress_bar=False)
    callbacks = pretraining_callbacks(trainer)
    assert [type(c) for c in callbacks] == [PhaseProgress, FlushDenormals]
    assert callbacks[1] is flush


def test_cli_run_flushes_in_both_stages(tmp_path: Path, monkeypatch) -> None:
    calls: list[bool] = []
    real = torch.set_flush_denormal
    monkeypatch.setattr(torch, "set_flush_denormal", lambda on: calls.append(on) or real(on))
    flush = '{"class_path": "dec_lightning.callbacks.FlushDenormals"}'
    run_cli(cli_args("run", tmp_path, "--trainer.callbacks+=" + flush, pretrain_steps=20, steps=5))
    assert calls == [True, False, True, False]  # pretraining fit, then clustering fit
