"""`sample_weights`: DDP's average of the ranks' losses equals one device's batch mean, padding and uneven splits included."""

from __future__ import annotations

from types import SimpleNamespace

import lightning as L
import torch

from dec_lightning.modules.reduction import sample_weights


class _Module(L.LightningModule):
    def __init__(self, trainer: object | None) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self._trainer = trainer


def _rank_trainer(world: int, total_real: float) -> SimpleNamespace:
    """What a rank sees: the world size, and an all-reduce that returns the global count of real samples."""
    return SimpleNamespace(
        world_size=world, strategy=SimpleNamespace(reduce=lambda t, reduce_op: t.new_tensor(total_real))
    )


def test_one_process_is_the_plain_mean() -> None:
    losses = torch.tensor([1.0, 2.0, 6.0])
    assert float((losses * sample_weights(_Module(None), torch.arange(3))).sum()) == 3.0


def test_ranks_with_uneven_real_samples_average_to_the_global_mean() -> None:
    """The last batch of an odd epoch: 5 real samples over 2 ranks as 3 + (2 real + 1 padding, index -1)."""
    losses = torch.tensor([1.0, 2.0, 3.0, 4.0, 10.0, 100.0])  # 100: the padding entry's loss
    ranks = [(torch.tensor([7, 9, 11]), losses[:3]), (torch.tensor([8, 10, -1]), losses[3:])]
    per_rank = []
    for index, loss in ranks:
        weights = sample_weights(_Module(_rank_trainer(2, total_real=5.0)), index)
        per_rank.append(float((loss * weights).sum()))
    ddp_average = sum(per_rank) / 2  # what DDP's gradient all-reduce averages
    assert ddp_average == sum([1.0, 2.0, 3.0, 4.0, 10.0]) / 5  # the padding weighs nothing
    plain_average = (losses[:3].mean() + losses[3:5].mean()) / 2  # per-rank means would be biased
    assert abs(float(plain_average) - ddp_average) > 0.1
