"""Time to accuracy: minutes to each ACC level, read from the recorded per-refresh scores."""

from __future__ import annotations

from benchmarks import time_to_accuracy
from benchmarks._common import render_markdown


def _run(seed: int, trajectory: list[list[float]]) -> dict:
    return {"seed": seed, "acc": trajectory[-1][2], "pretrain_steps": 100, "acc_by_refresh": trajectory,
            "wall_s": {"total": 600.0, "pretrain": 300.0}}  # fmt: skip


def test_minutes_to_each_level_per_seed_and_in_the_table() -> None:
    runs = [
        _run(0, [[1, 300.0, 0.85], [141, 360.0, 0.90], [281, 420.0, 0.96], [421, 480.0, 0.975]]),
        _run(1, [[1, 310.0, 0.80], [141, 372.0, 0.89]]),
    ]
    result = {"runs": runs, "config": "configs/x.yaml", "command": "c", "seeds": [0, 1], "acc_mean": 0.93,
              "acc_std": 0.04}  # fmt: skip
    row = time_to_accuracy.schedule_row("x", result, 0.88)
    assert row["minutes_to"] == {"0.88": [6.0, 6.2], "0.95": [7.0, None], "0.97": [8.0, None]}
    table = render_markdown({"time_to_accuracy": {"target_acc": 0.88, "schedules": [row], "fastest": "x"}})
    assert "| 6.0, 6.2 / 7.0, n/a / 8.0, n/a |" in table
