"""`make bench-scaling`: how DEC's costs grow with N, on synthetic data (N x 50, encoder 50-64-10).

For each N in {1e4, 1e5, 1e6}, in a fresh subprocess (so its peak RSS is its own): time per DEC
training epoch under `lightning.Trainer`, time per whole-dataset Q refresh, k-means
initialisation time (scikit-learn, 20 restarts) and peak RSS. Linear growth shows as a flat
time-per-sample column.

Run: ``OMP_NUM_THREADS=1 python benchmarks/scaling.py`` (or ``make bench-scaling``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lightning as L
import torch
from sklearn.cluster import KMeans

from benchmarks._common import loadavg, peak_rss_mib, set_threads, update_results
from dec_lightning.callbacks import TargetDistributionRefresh
from dec_lightning.data import ArrayDataModule
from dec_lightning.data.indexed import IndexedDataset, collate_batch
from dec_lightning.encoders.mlp import MLPEncoder
from dec_lightning.modules.dataset_pass import whole_dataset_pass
from dec_lightning.modules.dec import DEC

D, K, BATCH = 50, 10, 256
DIMS = [D, 64, K]


class _StepTimer(L.Callback):
    """Seconds from the end of step 1 to the end of the last step: the steady-state step time."""

    def __init__(self) -> None:
        self.t0 = self.t1 = 0.0
        self.steps = 0

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        now = time.perf_counter()
        if trainer.global_step == 1:
            self.t0 = now
        self.t1, self.steps = now, trainer.global_step - 1


def one(n: int, max_steps: int, kmeans_max_n: int) -> dict[str, Any]:
    """All measurements for one N (run in its own process)."""
    set_threads(1)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    g = torch.Generator().manual_seed(0)
    means = torch.randn(K, D, generator=g) * 3
    x = (means[torch.randint(K, (n,), generator=g)] + torch.randn(n, D, generator=g)).numpy()
    torch.manual_seed(0)
    module = DEC(MLPEncoder(DIMS), n_clusters=K)

    # k-means init on the embedding (what KMeansInit does), subsampled above kmeans_max_n
    dataset = IndexedDataset(x)
    stub = SimpleNamespace(
        train_dataloader=torch.utils.data.DataLoader(dataset, collate_fn=collate_batch),
        world_size=1,
        global_rank=0,
        strategy=None,
    )
    embedding, _ = whole_dataset_pass(stub, module, module.embed)
    kmeans_n = min(n, kmeans_max_n)
    sample = embedding[torch.randperm(n, generator=g)[:kmeans_n]].double().numpy()
    start = time.perf_counter()
    km = KMeans(K, n_init=20, random_state=0).fit(sample)
    kmeans_s = time.perf_counter() - start
    module.centers.data.copy_(torch.from_numpy(km.cluster_centers_).float())

    # refresh of Q over all N (what TargetDistributionRefresh does), best of 2
    refresh = []
    for _ in range(2):
        start = time.perf_counter()
        whole_dataset_pass(stub, module, module.forward)
        refresh.append(time.perf_counter() - start)

    # DEC epoch under the Trainer, one refresh at step 0 (update_interval larger than the run)
    steps_per_epoch = -(-n // BATCH)
    steps = min(steps_per_epoch, max_steps)
    timer = _StepTimer()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[TargetDistributionRefresh(update_interval=10**9), timer],
    )
    trainer.fit(module, datamodule=ArrayDataModule(x, batch_size=BATCH))
    step_s = (timer.t1 - timer.t0) / timer.steps
    return {
        "n": n,
        "epoch_s": step_s * steps_per_epoch,
        "epoch_steps_measured": timer.steps,
        "epoch_extrapolated": steps < steps_per_epoch,
        "epoch_us_per_sample": step_s * steps_per_epoch / n * 1e6,
        "refresh_s": min(refresh),
        "refresh_us_per_sample": min(refresh) / n * 1e6,
        "kmeans_s": kmeans_s,
        "kmeans_n": kmeans_n,
        "kmeans_us_per_sample": kmeans_s / kmeans_n * 1e6,
        "peak_rss_mib": peak_rss_mib(),
        "data_mib": x.nbytes / 2**20,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--max-steps", type=int, default=1500, help="steps measured per epoch; more are extrapolated")
    parser.add_argument("--kmeans-max-n", type=int, default=200000, help="k-means on a random subsample above this")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one, args.max_steps, args.kmeans_max_n)))
        return
    before, wall, rows = loadavg(), time.perf_counter(), []
    for n in (int(s) for s in args.sizes.split(",")):
        cmd = [sys.executable, __file__, "--one", str(n), "--max-steps", str(args.max_steps)]
        cmd += ["--kmeans-max-n", str(args.kmeans_max_n)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        r = rows[-1]
        print(
            f"N={n}: epoch {r['epoch_s']:.2f}s ({r['epoch_us_per_sample']:.1f} us/sample), refresh "
            f"{r['refresh_s']:.3f}s ({r['refresh_us_per_sample']:.2f} us/sample), k-means {r['kmeans_s']:.2f}s "
            f"on {r['kmeans_n']}, peak RSS {r['peak_rss_mib']:.0f} MiB",
            flush=True,
        )
    first, last = rows[0], rows[-1]
    growth = {
        key: last[key] / first[key] for key in ("epoch_us_per_sample", "refresh_us_per_sample", "kmeans_us_per_sample")
    }
    payload = {
        "setup": f"Synthetic N x {D} (10 Gaussian blobs), encoder {DIMS}, K={K}, batch {BATCH}, 1 thread, "
        "each N in its own process. DEC epoch = steady-state step time (from the end of step 1) x steps per epoch, "
        f"under lightning.Trainer; epochs of more than {args.max_steps} steps are extrapolated from "
        f"{args.max_steps} measured steps (marked). Refresh = `whole_dataset_pass` of Q at its default batch size. "
        f"k-means = scikit-learn, 20 restarts, on a random subsample of {args.kmeans_max_n:,} embeddings above "
        "that N (marked in the 'k-means on' column).",
        "rows": rows,
        "per_sample_growth_first_to_last": growth,
        "note": "- time per sample, largest N / smallest N: "
        + ", ".join(f"{k} {v:.2f}x" for k, v in growth.items())
        + " (1.0 = linear growth; k-means iteration counts vary with the data, so its ratio is the noisiest).",
        "command": "make bench-scaling  (OMP_NUM_THREADS=1 python benchmarks/scaling.py)",
        "loadavg_before": before,
        "loadavg_after": loadavg(),
        "wall_s": time.perf_counter() - wall,
    }
    update_results("scaling", payload)


if __name__ == "__main__":
    main()
