"""`make bench-scaling`: how DEC's costs grow with N, on synthetic data (N x 50, encoder 50-64-10).

For each N in {1e4, 1e5, 1e6}, in a fresh subprocess (so its peak RSS is its own): time per DEC
training epoch under `lightning.Trainer`, time per whole-dataset Q refresh, k-means
initialisation time (scikit-learn, 20 restarts) and peak RSS. Linear growth shows as a flat
time-per-sample column.

The graph start at scale: ``--graph-n`` (default 1e6) rows of a 10-d embedding-like mixture (10
Gaussian blobs) get `graph_spectral_labels` with its defaults, one thread, in a fresh process:
``graph_start_1m_s`` in performance.json. ``--graph-n 0`` skips it.

Then data larger than memory: a ``--mmap-gb`` GB float32 ``.npy`` file (default 4 GB, 10M x 100)
is written to ``--mmap-dir``, clustered end to end by the `DEC` estimator from
``np.load(path, mmap_mode="r")`` in a fresh process, and deleted; the process's peak anonymous
memory (RssAnon, sampled by a thread: /proc has no peak field for it) is recorded against the
file size. ``--mmap-gb 0`` skips it, ``--sizes ''`` skips the N sweep.

Run: ``OMP_NUM_THREADS=1 python benchmarks/scaling.py`` (or ``make bench-scaling``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Self

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lightning as L
import numpy as np
import torch
from sklearn.cluster import KMeans

from benchmarks._common import loadavg, machine_facts, peak_rss_mib, set_threads, update_results
from dec_lightning.callbacks import TargetDistributionRefresh
from dec_lightning.callbacks.graph_start import GRAPH_SAMPLES, graph_spectral_labels
from dec_lightning.data import ArrayDataModule
from dec_lightning.data.indexed import IndexedDataset, collate_batch
from dec_lightning.encoders.mlp import MLPEncoder
from dec_lightning.estimator import DEC as DECEstimator
from dec_lightning.metrics.clustering import cluster_accuracy
from dec_lightning.modules.dataset_pass import whole_dataset_pass
from dec_lightning.modules.dec import DEC

D, K, BATCH = 50, 10, 256
DIMS = [D, 64, K]
MMAP_HIDDEN, MMAP_EMBEDDING = (64,), 10


def proc_status_kib(field: str) -> int:
    """One ``/proc/self/status`` field in KiB, e.g. ``RssAnon`` or ``VmHWM`` (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


class PeakRssAnon:
    """Peak anonymous resident memory (``RssAnon``) of this process while the ``with`` block runs.

    RssAnon counts heap and tensors but not the page cache a memory-mapped file is read through,
    which is what tells "the file stays on disk" from "the file was copied in". /proc has no
    peak field for it (VmHWM is the peak of all RSS, mapped file pages included), so a daemon
    thread samples it every ``interval`` seconds; a copy that lives shorter than that can be
    missed, one that is kept cannot.
    """

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.start_kib = self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_kib = max(self.peak_kib, proc_status_kib("RssAnon"))

    def __enter__(self) -> Self:
        self.start_kib = self.peak_kib = proc_status_kib("RssAnon")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kib = max(self.peak_kib, proc_status_kib("RssAnon"))

    @property
    def growth_bytes(self) -> int:
        """Peak minus the value at entry."""
        return (self.peak_kib - self.start_kib) * 1024


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


def write_blobs(path: Path, labels_path: Path, n: int, d: int, k: int, chunk: int = 1 << 18) -> None:
    """Write N x d float32 Gaussian blobs to a ``.npy`` file chunk by chunk (never whole in memory), labels beside."""
    rng = np.random.default_rng(0)
    means = rng.normal(size=(k, d)).astype(np.float32) * 1.5
    x = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    labels = np.empty(n, dtype=np.int8)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        part = rng.integers(k, size=stop - start)
        x[start:stop] = means[part] + rng.standard_normal((stop - start, d), dtype=np.float32)
        labels[start:stop] = part
    x.flush()
    del x
    np.save(labels_path, labels)


def mmap_run(
    path: str, labels_path: str, k: int, pretrain_steps: int, cluster_steps: int, update_interval: int
) -> dict:
    """Cluster a memory-mapped file end to end with the `DEC` estimator; peak RssAnon during `fit` (own process)."""
    set_threads(1)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    x = np.load(path, mmap_mode="r")
    estimator = DECEstimator(
        n_clusters=k,
        hidden_dims=MMAP_HIDDEN,
        embedding_dim=MMAP_EMBEDDING,
        pretrain_steps=pretrain_steps,
        cluster_steps=cluster_steps,
        update_interval=update_interval,
        batch_size=BATCH,
        accelerator="cpu",
    )
    with PeakRssAnon(interval=0.01) as peak:
        start = time.perf_counter()
        estimator.fit(x)
        fit_s = time.perf_counter() - start
    file_bytes = Path(path).stat().st_size
    truth = torch.from_numpy(np.load(labels_path).astype(np.int64))
    return {
        "file_bytes": file_bytes,
        "n": int(x.shape[0]),
        "d": int(x.shape[1]),
        "k": k,
        "rss_anon_before_fit_mib": peak.start_kib / 1024,
        "peak_rss_anon_mib": peak.peak_kib / 1024,
        "peak_rss_anon_over_file": peak.peak_kib * 1024 / file_bytes,
        "peak_growth_over_file": peak.growth_bytes / file_bytes,
        "vm_hwm_mib": proc_status_kib("VmHWM") / 1024,
        "fit_s": fit_s,
        "n_iter": int(estimator.n_iter_),
        "acc_vs_blobs": cluster_accuracy(torch.from_numpy(estimator.labels_), truth),
        "machine": machine_facts(),
    }


def mmap_note(row: dict[str, Any]) -> str:
    """Where the peak goes: the imports, DEC's per-sample state (P, labels, shuffle order) and the rest."""
    file_mib, n = row["file_bytes"] / 2**20, row["n"]
    state = {"P (N x K float32)": n * row["k"] * 4, "labels (N int32)": n * 4, "shuffle order (N int32)": n * 4}
    state_mib = sum(state.values()) / 2**20
    rest = row["peak_rss_anon_mib"] - row["rss_anon_before_fit_mib"] - state_mib
    parts = ", ".join(f"{name} {b / 2**20:.0f} MiB" for name, b in state.items())
    return (
        f"- where the peak goes: {row['rss_anon_before_fit_mib']:.0f} MiB before fit (imports: "
        f"{row['rss_anon_before_fit_mib'] / file_mib:.3f} of the file), DEC's state {state_mib:.0f} MiB ({parts}; "
        f"{state_mib / file_mib:.3f} of the file), the rest {rest:.0f} MiB (batches, Lightning, freed heap). "
        "The state is what must stay in memory: P is held fixed between refreshes and every step looks up its "
        "rows, the labels feed the stopping rule, and the shuffle order decides the batches."
    )


def run_mmap(args: argparse.Namespace) -> None:
    """Write the file, cluster it in a fresh process, record the result, delete the file (also on failure)."""
    d = args.mmap_d
    n = int(args.mmap_gb * 1e9 / (4 * d))
    directory = Path(args.mmap_dir or tempfile.gettempdir())
    need = n * d * 4 + n
    free = shutil.disk_usage(directory).free
    if free < need + 2 * 2**30:
        raise SystemExit(f"{directory}: {free / 2**30:.1f} GiB free, the {need / 2**30:.1f} GiB file needs 2 GiB more")
    path, labels_path = directory / f"dec_mmap_{os.getpid()}.npy", directory / f"dec_mmap_{os.getpid()}_labels.npy"
    before, wall = loadavg(), time.perf_counter()
    try:
        start = time.perf_counter()
        write_blobs(path, labels_path, n, d, args.mmap_k)
        write_s = time.perf_counter() - start
        cmd = [sys.executable, __file__, "--mmap-run", str(path), "--mmap-labels", str(labels_path)]
        cmd += ["--mmap-k", str(args.mmap_k), "--mmap-pretrain-steps", str(args.mmap_pretrain_steps)]
        cmd += ["--mmap-cluster-steps", str(args.mmap_cluster_steps)]
        cmd += ["--mmap-update-interval", str(args.mmap_update_interval)]
        done = subprocess.run(cmd, check=False, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"mmap run failed:\n{done.stderr[-4000:]}")
        row = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        path.unlink(missing_ok=True)
        labels_path.unlink(missing_ok=True)
    ratio = row["peak_rss_anon_over_file"]
    print(
        f"mmap {row['file_bytes'] / 1e9:.2f} GB ({row['n']:,} x {row['d']}): peak RssAnon {row['peak_rss_anon_mib']:.0f} "
        f"MiB = {ratio:.3f} x file (before fit {row['rss_anon_before_fit_mib']:.0f} MiB), fit {row['fit_s']:.0f} s, "
        f"ACC {row['acc_vs_blobs']:.3f}",
        flush=True,
    )
    hidden = "-".join(str(h) for h in MMAP_HIDDEN)
    payload = {
        "setup": (
            f"A {row['file_bytes'] / 1e9:.2f} GB float32 .npy file ({row['n']:,} x {row['d']}, {row['k']} Gaussian "
            f"blobs, written chunk by chunk to {directory} in {write_s:.0f} s) clustered end to end in a fresh process "
            f"by the DEC estimator from np.load(path, mmap_mode='r'): encoder {row['d']}-{hidden}-{MMAP_EMBEDDING}, "
            f"pretraining {args.mmap_pretrain_steps} steps, DEC up to {args.mmap_cluster_steps} steps with P refreshed "
            f"every {args.mmap_update_interval}, batch {BATCH}, k-means init (20 restarts) on a uniform sample of "
            "1,000,000 embeddings (KMeansInit's max_samples), 1 torch thread; the file is deleted afterwards."
        ),
        "measured_how": (
            "Peak RssAnon (anonymous memory: heap, tensors; not the page cache the map is read through) during fit, "
            "sampled every 10 ms by a background thread reading /proc/self/status (RssAnon has no peak field; "
            "VmHWM, the peak of all RSS, counts the mapped file's pages too and is recorded for contrast). "
            "'before fit' is RssAnon after the imports and np.load (torch + lightning alone are ~450 MiB here); "
            "peak_growth_over_file = (peak - before fit) / file size."
        ),
        "row": row,
        "target": "peak RssAnon / file size <= 0.25 for a 4 GB file",
        "note": mmap_note(row),
        "command": (
            f"make bench-scaling  (OMP_NUM_THREADS=1 python benchmarks/scaling.py --mmap-gb {args.mmap_gb:g}"
            f" --mmap-d {d}{' --sizes ' + repr(args.sizes) if args.sizes != SIZES else ''})"
        ),
        "loadavg_before": before,
        "loadavg_after": loadavg(),
        "wall_s": time.perf_counter() - wall,
    }
    update_results("mmap", payload, top_level={"mmap_peak_rss_anon_over_file": ratio})


SIZES = "10000,100000,1000000"
GRAPH_D = 10  # DEC's embedding size


def graph_run(n: int) -> dict[str, Any]:
    """Time the graph start (its defaults) on ``n`` x 10 blobs; peak RSS of this process."""
    from sklearn.datasets import make_blobs

    set_threads(1)
    x, y = make_blobs(n, GRAPH_D, centers=K, cluster_std=4.0, random_state=0)
    start = time.perf_counter()
    labels = graph_spectral_labels(x, K)
    seconds = time.perf_counter() - start
    return {
        "n": n,
        "d": GRAPH_D,
        "k": K,
        "graph_samples": GRAPH_SAMPLES,
        "seconds": seconds,
        "acc_vs_blobs": cluster_accuracy(torch.from_numpy(labels.astype(np.int64)), torch.from_numpy(y)),
        "peak_rss_mib": peak_rss_mib(),
        "machine": machine_facts(),
    }


def run_graph(n: int) -> None:
    """`graph_run` in a fresh process; records the ``graph_start`` section and ``graph_start_1m_s``."""
    before = loadavg()
    cmd = [sys.executable, __file__, "--graph-run", str(n)]
    row = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
    print(f"graph start on {n:,} x {GRAPH_D}: {row['seconds']:.0f} s, ACC {row['acc_vs_blobs']:.3f}", flush=True)
    payload = {
        "setup": (
            f"graph_spectral_labels with its defaults (100 micro-clusters, 20 neighbours, split-and-merge, graph "
            f"built from a uniform sample of {GRAPH_SAMPLES:,} rows, KD-tree neighbour search) on {n:,} x {GRAPH_D} "
            f"Gaussian blobs (K={K}), one thread, in a fresh process"
        ),
        "row": row,
        "target": "<= 300 s for 1M x 10 on one thread",
        "command": "make bench-scaling  (OMP_NUM_THREADS=1 python benchmarks/scaling.py)",
        "loadavg_before": before,
        "loadavg_after": loadavg(),
    }
    top = {"graph_start_1m_s": row["seconds"]} if n == 1_000_000 else {}
    update_results("graph_start", payload, top_level=top)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=SIZES, help="comma-separated N of the sweep; '' skips it")
    parser.add_argument("--max-steps", type=int, default=1500, help="steps measured per epoch; more are extrapolated")
    parser.add_argument("--kmeans-max-n", type=int, default=200000, help="k-means on a random subsample above this")
    parser.add_argument("--mmap-gb", type=float, default=4.0, help="size of the memory-mapped file in GB; 0 skips")
    parser.add_argument("--mmap-d", type=int, default=100, help="features of the memory-mapped file")
    parser.add_argument("--mmap-dir", help="where to write it (default: the system temp folder)")
    parser.add_argument("--mmap-k", type=int, default=10)
    parser.add_argument("--mmap-pretrain-steps", type=int, default=300)
    parser.add_argument("--mmap-cluster-steps", type=int, default=300)
    parser.add_argument("--mmap-update-interval", type=int, default=100)
    parser.add_argument("--graph-n", type=int, default=1_000_000, help="rows for the graph start's timing; 0 skips")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--graph-run", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mmap-run", help=argparse.SUPPRESS)
    parser.add_argument("--mmap-labels", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one, args.max_steps, args.kmeans_max_n)))
        return
    if args.graph_run:
        print(json.dumps(graph_run(args.graph_run)))
        return
    if args.mmap_run:
        steps = (args.mmap_pretrain_steps, args.mmap_cluster_steps, args.mmap_update_interval)
        print(json.dumps(mmap_run(args.mmap_run, args.mmap_labels, args.mmap_k, *steps)))
        return
    if args.sizes:
        sweep(args)
    if args.graph_n > 0:
        run_graph(args.graph_n)
    if args.mmap_gb > 0:
        run_mmap(args)


def sweep(args: argparse.Namespace) -> None:
    """N in ``args.sizes``, each in its own process; records the ``scaling`` section."""
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
