"""bf16-mixed against float32 pretraining throughput on a GPU, alternated in one run (issue #14, goal 3).

The same step as `make bench`'s bf16 row (`throughput.lightning_run`: the paper's 784-500-500-2000-10
autoencoder, Adam, `AutoencoderPretraining` under `lightning.Trainer`), timed on ``cuda`` at the
paper's batch of 256 and at 4096. Results: ``benchmarks/studies/results/bf16_gpu.{json,md}``.

Run on a machine with a CUDA GPU: ``python benchmarks/studies/bf16_gpu.py``.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks import throughput
from benchmarks._common import loadavg, machine_facts

RESULTS = Path(__file__).resolve().parent / "results"
PRECISIONS = ("32-true", "bf16-mixed")


def measure(x: np.ndarray, batch: int, steps: int, repeats: int = 3) -> dict:
    """Samples/s per precision, alternating a b, b a, ... so that drift hits both alike."""
    rates: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    for r in range(repeats):
        for precision in PRECISIONS[:: 1 if r % 2 == 0 else -1]:
            timed_s, _ = throughput.lightning_run(
                x, 50, steps, seed=r, precision=precision, accelerator="gpu", batch_size=batch
            )
            rates[precision].append(batch * steps / timed_s)
    median = {p: statistics.median(v) for p, v in rates.items()}
    return {
        "batch": batch,
        "steps": steps,
        "samples_per_s": rates,
        "median": median,
        "bf16_pretrain_speedup": median["bf16-mixed"] / median["32-true"],
    }


def main() -> None:
    if not torch.cuda.is_available():
        raise SystemExit("bf16_gpu.py needs a CUDA GPU; on a CPU, `make bench` records the bf16 row")
    start = time.perf_counter()
    x = np.random.default_rng(0).random((70000, throughput.DIMS[0]), dtype=np.float32)
    rows = [measure(x, 256, 600), measure(x, 4096, 150)]
    payload = {
        "gpu": torch.cuda.get_device_name(0),
        "machine": machine_facts(),
        "command": "python benchmarks/studies/bf16_gpu.py",
        "loadavg_after": loadavg(),
        "rows": rows,
        "wall_s": time.perf_counter() - start,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bf16_gpu.json").write_text(json.dumps(payload, indent=2) + "\n")
    (RESULTS / "bf16_gpu.md").write_text(markdown(payload))
    print(markdown(payload))


def markdown(p: dict) -> str:
    lines = [
        "# bf16-mixed vs float32 pretraining on a GPU",
        "",
        f"GPU: {p['gpu']}; torch {p['machine']['torch']}, lightning {p['machine']['lightning']}. Command: "
        + f"`{p['command']}`.",
        "",
        "| batch | float32 samples/s (median) | bf16-mixed samples/s (median) | bf16_pretrain_speedup |",
        "| --- | --- | --- | --- |",
    ]
    for r in p["rows"]:
        m = r["median"]
        lines.append(
            f"| {r['batch']} | {m['32-true']:.0f} | {m['bf16-mixed']:.0f} | {r['bf16_pretrain_speedup']:.2f} |"
        )
    if p.get("note"):
        lines += ["", p["note"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
