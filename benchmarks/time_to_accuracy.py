"""Time to accuracy on MNIST: which measured schedule reaches the ACC target fastest.

    python benchmarks/time_to_accuracy.py

Reads the quality benchmark's MNIST result files (``benchmarks/results/<name>.json``, written
by ``quality.py``: one schedule each) and puts their comparison into ``performance.json`` /
``performance.md``. It runs nothing itself: every number comes from those recorded runs.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import RESULTS_DIR, update_results
from benchmarks.quality import first_refresh_at

TARGET_ACC = 0.88
LEVELS = (0.88, 0.95, 0.97)  # issue #14: minutes to each, per seed
# Measured MNIST schedules (quality.py --name ...), fastest candidate last.
SCHEDULES = (
    "mnist",
    "mnist_e50",
    "mnist_e50_lw",
    "mnist_fast_idec_aug_short",
    "mnist_fast_kl_rec_aug",
    "mnist_fast_idec_aug",
    "mnist_plain_glorot",
    "mnist_plain_pytorchinit",
    "mnist_plain_dec",
    "mnist_cpu_best_no_cap",
    "mnist_cpu_best",
)


def minutes_to(runs: list[dict[str, Any]], level: float) -> list[float | None]:
    """Minutes from the start of each run to its first refresh of P at ACC >= level."""
    return [None if (hit := first_refresh_at(r, level)) is None else hit[1] / 60 for r in runs]


def schedule_row(name: str, result: dict[str, Any], target: float) -> dict[str, Any]:
    runs = result["runs"]
    return {
        "name": name,
        "config": result["config"],
        "command": result["command"],
        "note": result.get("note"),
        "seeds": result["seeds"],
        "acc_mean": result["acc_mean"],
        "acc_std": result["acc_std"],
        "acc_per_seed": [r["acc"] for r in runs],
        "pretrain_steps": runs[0]["pretrain_steps"],
        "wall_min_mean": statistics.fmean(r["wall_s"]["total"] for r in runs) / 60,
        "pretrain_min_mean": statistics.fmean(r["wall_s"]["pretrain"] for r in runs) / 60,
        # per level, per seed: None where the run predates the per-refresh record (acc_by_refresh)
        # or never reached that ACC
        "minutes_to": {f"{level:.2f}": minutes_to(runs, level) for level in LEVELS},
        "meets_target": result["acc_mean"] >= target,
    }


def main() -> dict[str, Any]:
    rows = [
        schedule_row(name, json.loads(path.read_text()), TARGET_ACC)
        for name in SCHEDULES
        if (path := RESULTS_DIR / f"{name}.json").is_file()
    ]
    meeting = [r for r in rows if r["meets_target"]]
    fastest = min(meeting, key=lambda r: r["wall_min_mean"]) if meeting else None
    payload = {"target_acc": TARGET_ACC, "schedules": rows, "fastest": fastest and fastest["name"]}
    update_results(
        "time_to_accuracy", payload, {"mnist_minutes_to_target": fastest and round(fastest["wall_min_mean"], 1)}
    )
    for r in rows:
        print(f"{r['name']}: ACC {r['acc_mean']:.3f} over {len(r['seeds'])} seed(s), {r['wall_min_mean']:.1f} min")
    return payload


if __name__ == "__main__":
    main()
