"""Ablation: DEC with vs without per-epoch centroid re-initialisation (`CentroidReinit`).

For each dataset and seed the autoencoder is pretrained once; both arms then cluster from
copies of the same pretrained weights for the same number of steps (no tolerance stopping),
so they differ only in the callback. Reports mean ± std of ACC/NMI over seeds and the
clustering wall time (k-means re-runs included: that is the cost of the option).

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/ablation_reinit.py --datasets digits usps --seeds 0 1 2

Writes benchmarks/results/ablation_reinit.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from beyond_pipeline import cluster, mean_std, pretrain, quiet
from image_data import load

from dec_lightning.callbacks import CentroidReinit
from dec_lightning.encoders import MLPEncoder

RESULTS = Path(__file__).resolve().parent / "results"

# Small, fast schedules: 2 shared CPU cores. The MLP is narrower than DEC's d-500-500-2000-10.
SCHEDULES = {
    "digits": {"hidden": [256, 256, 1024, 10], "batch_size": 256, "pretrain_steps": 600, "cluster_steps": 400,
               "update_interval": 16},
    "usps": {"hidden": [256, 256, 1024, 10], "batch_size": 256, "pretrain_steps": 1110, "cluster_steps": 740,
             "update_interval": 37},
    # MNIST: 10 pretraining epochs, 5 clustering epochs of 274 steps (4 re-inits), P every 137 steps
    "mnist": {"hidden": [256, 256, 1024, 10], "batch_size": 256, "pretrain_steps": 2740, "cluster_steps": 1370,
              "update_interval": 137},
    # Reuters-21578 (4 classes): 50 pretraining epochs (as reuters_fast.yaml), 20 clustering epochs of 28 steps
    "reuters": {"hidden": [256, 256, 1024, 10], "batch_size": 256, "pretrain_steps": 1400, "cluster_steps": 560,
                "update_interval": 28},
}  # fmt: skip
REINIT_N_INIT = 10  # k-means restarts per re-initialisation (the first k-means uses 20, as in the paper)


def run(datasets: list[str], seeds: list[int]) -> dict:
    quiet()
    rows = []
    for name in datasets:
        s = SCHEDULES[name]
        x, y = load(name)
        for seed in seeds:
            encoder = MLPEncoder([x.shape[1], *s["hidden"]])
            ae, pretrain_seconds = pretrain(
                x, y, seed, encoder, None, s["batch_size"], finetune_steps=s["pretrain_steps"],
                optimizer=lambda p: torch.optim.Adam(p, lr=1e-3),
            )  # fmt: skip
            for reinit in (False, True):
                result = cluster(
                    x, y, seed, ae, s["batch_size"], s["cluster_steps"], s["update_interval"],
                    extra_callbacks=(lambda: [CentroidReinit(n_init=REINIT_N_INIT)]) if reinit else list,
                    n_clusters=int(y.max()) + 1,
                )  # fmt: skip
                row = {"dataset": name, "seed": seed, "reinit": reinit, "pretrain_seconds": pretrain_seconds, **result}
                rows.append(row)
                print(json.dumps(row), flush=True)
    return {
        "schedules": {d: SCHEDULES[d] for d in datasets},
        "seeds": seeds,
        "reinit_n_init": REINIT_N_INIT,
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread, 2 shared cores",
        "rows": rows,
    }


def table(result: dict) -> str:
    lines = [
        "| dataset | CentroidReinit | ACC | NMI | cluster time (s) | seeds |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name in result["schedules"]:
        for reinit in (False, True):
            rows = [r for r in result["rows"] if r["dataset"] == name and r["reinit"] == reinit]
            if rows:
                acc, nmi, sec = ([r[k] for r in rows] for k in ("acc", "nmi", "seconds"))
                on = "on" if reinit else "off"
                lines.append(
                    f"| {name} | {on} | {mean_std(acc)} | {mean_std(nmi)} | {np.mean(sec):.1f} | {len(rows)} |"
                )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["digits", "usps"], choices=sorted(SCHEDULES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args()
    start = time.perf_counter()
    result = run(args.datasets, args.seeds)
    result["total_seconds"] = time.perf_counter() - start
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "ablation_reinit.json"
    if path.is_file():  # keep the rows of the datasets not run this time (one file for the whole ablation)
        old = json.loads(path.read_text())
        kept = {d: sch for d, sch in old["schedules"].items() if d not in result["schedules"]}
        result["schedules"] = {**kept, **result["schedules"]}
        result["rows"] = [r for r in old["rows"] if r["dataset"] in kept] + result["rows"]
        result["total_seconds"] = {"this run": result["total_seconds"], "earlier runs": old.get("total_seconds")}
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print("(write benchmarks/results/ablation_reinit.md around this table: schedules and conclusions)")


if __name__ == "__main__":
    main()
