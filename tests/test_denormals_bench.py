"""`benchmarks/studies/denormals.py`: its subnormal count, and that each timed variant resumes the same saved state."""

from __future__ import annotations

import torch
from torch import nn

from benchmarks.studies.denormals import VARIANTS, adam_moments, markdown, subnormal_count, timed_from


def test_subnormal_count_counts_only_subnormals() -> None:
    t = torch.tensor([1e-39, -1e-40, 0.0, 1.2e-38, 1.0, -3e-45])
    assert subnormal_count([t, t[:2]]) == 3 + 2  # 1.2e-38 is normal, 0 is not subnormal


def test_each_variant_resumes_the_saved_state_without_changing_it() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 8), nn.ReLU(), nn.Linear(8, 784))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(600, 784)
    for _ in range(3):
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x[:256]), x[:256]).backward()
        optimizer.step()
    moments = adam_moments(optimizer)
    assert len(moments) == 2 * len(list(model.parameters()))
    moments[0].view(-1)[:5] = 1e-40  # plant subnormal moments, as a late checkpoint has
    state = {"model": model, "optimizer": optimizer.state_dict()}
    before = [p.detach().clone() for p in model.parameters()]
    for fused, flush in VARIANTS.values():
        assert timed_from(state, x, fused, flush, steps=2, seed=0) > 0
        assert (torch.tensor([1e-39]) * 1.0).item() != 0.0  # flushing is off again after each variant
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))
    assert subnormal_count(adam_moments(optimizer)) == 5


def test_markdown_lists_every_variant_with_its_speedup() -> None:
    ms = {name: {"median": 10.0 + i, "min": 9.0, "max": 12.0} for i, name in enumerate(VARIANTS)}
    result = {
        "command": "python benchmarks/studies/denormals.py",
        "machine": {"cpu": "cpu", "cores": 2, "torch": "2"},
        "settings": {"threads": 1, "init": "glorot_uniform", "warm_epochs": 20, "steps": 100, "repeats": 4},
        "load_average_start": [1.0],
        "load_average_end": [1.0],
        "warm_steps": 5460,
        "warm_ms_per_step": 80.0,
        "adam_moments": 100,
        "adam_moments_subnormal": 7,
        "ms_per_step": ms,
        "speedup": {name: 10.0 / v["median"] for name, v in ms.items()},
    }
    text = markdown(result)
    assert "7 of its 100 Adam moments were subnormal" in text
    for i, name in enumerate(VARIANTS):
        assert f"| {name} | {10.0 + i:.1f} | 9.0 - 12.0 | {10.0 / (10.0 + i):.2f}x |" in text
