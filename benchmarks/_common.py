"""Shared helpers of the benchmarks: threads, machine facts, performance.{json,md}, datasets, a Python-API pipeline.

Every suite and study imports it as ``benchmarks._common`` (each script puts the repository root
on ``sys.path``), so they record machines and write reports the same way.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import lightning as L
    import numpy as np
    from torch import nn

    from dec_lightning.modules import DEC, AutoencoderPretraining

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
JSON_PATH = RESULTS_DIR / "performance.json"
MD_PATH = RESULTS_DIR / "performance.md"

LEFT = (
    (
        "The torch k-means was measured on CPU only (no GPU lent to this task); on CPU it is 3-5x slower than "
        "scikit-learn's fused Cython Lloyd loop at equal inertia, so `kmeans_on_embedding` keeps scikit-learn "
        "and gets no backend option. Its code stays in benchmarks/kmeans_compare.py for a GPU measurement."
    ),
    "The 2-thread row is skipped when the 1-minute load exceeds 2 x CPUs (a shared machine can be that busy).",
    (
        "Profiles use torch.profiler; py-spy is not installed in the venv (it would show Python-side overhead, "
        "which the Lightning/raw ratio already bounds at a few per cent)."
    ),
    (
        "Both throughput figures depend on the machine's load: an earlier `make bench` at load 7-9 measured "
        "a ratio of 0.966 and 0.24 of the matmul peak; compare runs by the load average recorded above."
    ),
    (
        "Adam(fused=True) is measured above on the first steps of a fresh autoencoder; late in pretraining it "
        "gains more, with subnormal Adam moments (benchmarks/studies/results/denormals.md): the MNIST fast configs "
        "and usps_fast_aug now set `fused: true`, the others keep the default Adam they were measured with."
    ),
    "Larger batches (a larger matmul share per step) were not tried: DEC's batch size is 256.",
)


def kmeans_init_args(config: dict[str, Any]) -> dict[str, Any]:
    """The ``init_args`` of a loaded config's `KMeansInit` callback (added empty if it has none), to
    read or set where DEC's centres start."""
    entry = next((cb for cb in config["trainer"].get("callbacks", []) if cb["class_path"].endswith("KMeansInit")), None)
    if entry is None:
        raise ValueError("the config has no dec_lightning.callbacks.KMeansInit in trainer.callbacks")
    return entry.setdefault("init_args", {})


def start_name(init: str, micro_clusters: int, n_neighbors: int) -> str:
    """A start in the results tables' words: k-means, or the graph start with its settings."""
    return "k-means" if init == "kmeans" else f"graph ({micro_clusters} micro-clusters, {n_neighbors} neighbours)"


def set_threads(n: int) -> None:
    """Pin torch's intra-op pool (and BLAS/OpenMP through threadpoolctl) to ``n`` threads.

    On a shared 2-core machine an unpinned pool oversubscribes and every number turns to noise.
    """
    import torch

    torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except ImportError:  # sklearn brings threadpoolctl; without it the env vars still apply
        pass


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_facts() -> dict[str, Any]:
    import lightning
    import torch

    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
        "torch_num_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
    }


def loadavg() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def peak_rss_mib() -> float:
    """Peak resident set size of this process (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def spread(values: list[float]) -> dict[str, float]:
    """Median and min/max of repeated measurements: the spread is the noise of the shared machine."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "values": [round(v, 4) for v in values],
    }


def update_results(section: str, payload: dict[str, Any], top_level: dict[str, Any] | None = None) -> dict[str, Any]:
    """Merge one benchmark's section (and summary keys) into performance.json; re-render the Markdown."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    results = json.loads(JSON_PATH.read_text()) if JSON_PATH.exists() else {}
    results[section] = payload
    results.update(top_level or {})
    JSON_PATH.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    MD_PATH.write_text(render_markdown(results))
    return results


def _fmt(v: Any, digits: int = 3) -> str:
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1e4 else f"{v:,.0f}"
    return str(v)


def _spread_cell(s: dict[str, float]) -> str:
    """A `spread` as a table cell: median (min-max), samples/s."""
    return f"{s['median']:.0f} ({s['min']:.0f}-{s['max']:.0f})"


def render_markdown(r: dict[str, Any]) -> str:
    """performance.md from performance.json: numbers only come from the JSON, never typed in."""
    out = ["# Performance", "", "Generated from `performance.json` by the benchmark scripts; do not edit by hand.", ""]
    if "lightning_vs_raw_ratio" in r:
        out += [
            "## Summary",
            "",
            "| metric | value | target |",
            "|---|---|---|",
            f"| Lightning / raw PyTorch samples/s (1 thread, median) | {_fmt(r['lightning_vs_raw_ratio'])} | >= 0.95 |",
            f"| achieved / measured matmul FLOP/s (1 thread) | {_fmt(r.get('achieved_flops_fraction'))} | >= 0.60 |",
            *(
                [f"| same, with Adam(fused=True) | {_fmt(r['fused_adam_achieved_flops_fraction'])} | >= 0.60 |"]
                if "fused_adam_achieved_flops_fraction" in r
                else []
            ),
            *(
                [
                    f"| bf16-mixed / float32 pretraining samples/s (1 thread; the CPU named in its section) | {_fmt(r['bf16_pretrain_speedup'])} | >= 1.5 |"
                ]
                if "bf16_pretrain_speedup" in r
                else []
            ),
            f"| k-means init, 20 restarts, 70000 x 10 (s, chosen backend) | {_fmt(r.get('kmeans_init_s'))} | |",
            f"| Q refresh, DEC MNIST encoder, per 1e5 samples (s) | {_fmt(r.get('refresh_s_per_1e5'))} | |",
            *(
                [
                    (
                        "| MNIST: minutes to ACC >= 0.88, fastest measured schedule (mean wall per seed) "
                        f"| {'none meets it' if r['mnist_minutes_to_target'] is None else format(r['mnist_minutes_to_target'], '.1f')} "
                        "| fastest |"
                    )
                ]
                if "mnist_minutes_to_target" in r
                else []
            ),
            "",
        ]
    t = r.get("throughput")
    if t:
        m = t["machine"]
        out += [
            "## Machine",
            "",
            f"- CPU: {m['cpu_model']} ({m['cpu_count']} logical CPUs, shared with other jobs)",
            f"- torch {m['torch']}, lightning {m['lightning']}, Python {m['python']}, OMP_NUM_THREADS={m['omp_num_threads_env']}",
            f"- load average (1/5/15 min) before: {t['loadavg_before']}, after: {t['loadavg_after']}",
            f"- command: `{t['command']}` ({t['wall_s']:.0f} s wall)",
            "",
            "## Training throughput: raw PyTorch loop vs. AutoencoderPretraining under lightning.Trainer",
            "",
            (
                f"AE {t['model']['dims']} (+ mirror decoder), {t['model']['matmul_params']:,} matmul weights, "
                f"batch {t['batch_size']}, Adam lr 1e-3, {t['steps_per_repeat']} timed steps per repeat after "
                f"{t['warmup_steps']} warm-up steps, (a) and (b) alternated, {t['repeats']} repeats each. "
                "FLOPs per sample for forward + backward = 6 x matmul weights."
            ),
            "",
            (
                "| threads | raw samples/s (median, min-max) | Lightning samples/s (median, min-max) | ratio "
                "| Lightning incl. fit() start-up | matmul peak GFLOP/s | achieved GFLOP/s (raw / Lightning) "
                "| fraction of peak (Lightning) |"
            ),
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in t["rows"]:
            out.append(
                f"| {row['threads']} | {_spread_cell(row['raw_samples_per_s'])} "
                f"| {_spread_cell(row['lightning_samples_per_s'])} | {row['ratio']:.3f} "
                f"| {row['lightning_incl_startup_samples_per_s']['median']:.0f} "
                f"| {row['matmul_peak_gflops']:.1f} | {row['raw_achieved_gflops']:.1f} / "
                f"{row['lightning_achieved_gflops']:.1f} | {row['achieved_flops_fraction']:.2f} |"
            )
        for row in t["rows"]:
            bound = row["step_matmul_bound_gflops"]
            out.append(
                f"\n{row['threads']} thread(s): the AE's own mix of matmul shapes, each at its isolated best speed, "
                f"bounds a training step at {bound:.1f} GFLOP/s = {bound / row['matmul_peak_gflops']:.2f} of the "
                f"peak shape (the thin 2000x10 / 10x2000 products of the embedding layer run at "
                f"{min(row['matmul_gflops_by_shape'].values()) / row['matmul_peak_gflops']:.2f} of the "
                f"peak); the Lightning run reaches {row['lightning_achieved_gflops'] / bound:.2f} of that bound. "
                "The rest goes to Adam's element-wise update of 3.3 M parameters per step (sqrt/div/addcdiv/lerp "
                "in the profile below), ReLU and MSE kernels, and, on this shared machine, to other jobs "
                "taking the core between the matmul measurement and the training run."
            )
            if "fused_adam_speedup" in row:
                f = row["lightning_fused_adam_samples_per_s"]
                out.append(
                    f"\nWith `Adam(fused=True)` (one kernel for the whole update; same run, alternated with the "
                    f"two above): {f['median']:.0f} samples/s ({f['min']:.0f}-{f['max']:.0f}), "
                    f"{row['fused_adam_speedup']:.2f}x the default Adam, "
                    f"{row['fused_adam_achieved_flops_fraction']:.2f} of the matmul peak."
                )
        out += ["", "Matmul peak per shape (GFLOP/s, float32 torch.mm, best of repeats):", ""]
        for row in t["rows"]:
            shapes = ", ".join(f"{k}: {v:.1f}" for k, v in row["matmul_gflops_by_shape"].items())
            out.append(f"- {row['threads']} thread(s): {shapes}")
        out.append("")
        if t.get("notes"):
            out += [*(f"- {n}" for n in t["notes"]), ""]
    b16 = r.get("bf16")
    if b16:
        m = b16["machine"]
        native = "has" if b16["cpu_has_avx512_bf16"] else "lacks"
        out += [
            '## Mixed precision: `precision="bf16-mixed"` against float32 pretraining',
            "",
            (
                "The same autoencoder, data and Adam as above under `lightning.Trainer`, float32 and bf16-mixed "
                "(bfloat16 autocast, float32 weights and optimizer) alternated in one run. "
                f"CPU: {m['cpu_model']} ({native} AVX512-BF16); load average before {b16['loadavg_before']}, "
                f"after {b16['loadavg_after']}; command `{b16['command']}`."
            ),
            "",
            "| threads | float32 samples/s (median, min-max) | bf16-mixed samples/s (median, min-max) | bf16 / float32 | per repeat |",
            "|---|---|---|---|---|",
        ]
        for row in b16["rows"]:
            out.append(
                f"| {row['threads']} | {_spread_cell(row['lightning_samples_per_s'])} "
                f"| {_spread_cell(row['lightning_bf16_mixed_samples_per_s'])} | **{row['bf16_pretrain_speedup']:.2f}** "
                f"| {', '.join(f'{v:.2f}' for v in row['bf16_speedup_per_repeat'])} |"
            )
        out.append("")
    lo = r.get("loader")
    if lo:
        out += [
            "## Data loading: one slice per batch (`__getitems__`) vs. one `__getitem__` per sample",
            "",
            (
                f"{lo['n']} x {lo['d']} float32 in memory, batch {lo['batch_size']}, shuffled, num_workers=0, "
                "loop only touches the batch (no model)."
            ),
            "",
            "| dataset | samples/s (median, min-max) |",
            "|---|---|",
        ]
        for name, s in lo["samples_per_s"].items():
            out.append(f"| {name} | {s['median']:,.0f} ({s['min']:,.0f}-{s['max']:,.0f}) |")
        out += ["", f"Speed-up of `__getitems__`: {lo['speedup']:.1f}x. {lo['note']}", ""]
    k = r.get("kmeans")
    if k:
        out += [
            "## k-means initialisation: scikit-learn vs. torch",
            "",
            f"{k['n_init']} restarts, K={k['k']}, float64 input for scikit-learn (as `kmeans_on_embedding` "
            "passes it), float32 for torch; inertia recomputed in float64 for both. "
            "Agreement = ARI between the two label vectors. " + k.get("data_note", ""),
            "",
            "| data | backend | time s (median, min-max) | inertia | ARI vs sklearn | iterations |",
            "|---|---|---|---|---|---|",
        ]
        for row in k["rows"]:
            tt = row["time_s"]
            out.append(
                f"| {row['data']} | {row['backend']} | {tt['median']:.2f} ({tt['min']:.2f}-{tt['max']:.2f}) "
                f"| {row['inertia']:.6g} | {_fmt(row.get('ari_vs_sklearn'))} | {row.get('iterations', '')} |"
            )
        out += [
            "",
            (
                "Iterations: scikit-learn's best restart; torch: its slowest restart (the restarts run batched, "
                "converged ones drop out)."
            ),
            "",
            f"Decision: {k['decision']}",
            "",
        ]
    rf = r.get("refresh")
    if rf:
        out += [
            "## Whole-dataset Q refresh (`whole_dataset_pass`, no grad)",
            "",
            f"DEC MNIST encoder {rf['dims']}, {rf['n']} samples, 1 thread; time scaled to 1e5 samples.",
            "",
            "| eval batch size | s per 1e5 samples (median, min-max) |",
            "|---|---|",
        ]
        for bs, s in rf["s_per_1e5_by_batch"].items():
            out.append(f"| {bs} | {s['median']:.2f} ({s['min']:.2f}-{s['max']:.2f}) |")
        out += ["", rf["note"], ""]
    sc = r.get("scaling")
    if sc:
        out += [
            "## Scaling with N (`make bench-scaling`)",
            "",
            sc["setup"],
            "",
            (
                "| N | DEC epoch s | epoch us/sample | refresh s | refresh us/sample | k-means s | k-means on | "
                "peak RSS MiB |"
            ),
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in sc["rows"]:
            out.append(
                f"| {row['n']:,} | {row['epoch_s']:.2f}{' (extrapolated)' if row['epoch_extrapolated'] else ''} "
                f"| {row['epoch_us_per_sample']:.1f} | {row['refresh_s']:.2f} | {row['refresh_us_per_sample']:.2f} "
                f"| {row['kmeans_s']:.2f} | {row['kmeans_n']:,} | {row['peak_rss_mib']:.0f} |"
            )
        out += [
            "",
            sc["note"],
            (
                f"- command: `{sc['command']}` ({sc['wall_s']:.0f} s wall), load before/after "
                f"{sc['loadavg_before']} / {sc['loadavg_after']}"
            ),
            "",
        ]
    gs = r.get("graph_start")
    if gs:
        row = gs["row"]
        out += [
            "## The graph start at scale (`make bench-scaling`)",
            "",
            gs["setup"],
            "",
            (
                f"- {row['n']:,} x {row['d']}: **{row['seconds']:.0f} s** (target: {gs['target']}), ACC against the blobs "
                f"{row['acc_vs_blobs']:.3f}, peak RSS {row['peak_rss_mib']:.0f} MiB"
            ),
            (
                f"- command: `{gs['command']}`, torch threads {row['machine']['torch_num_threads']}, "
                f"{row['machine']['cpu_model']} ({row['machine']['cpu_count']} CPUs), load before/after "
                f"{gs['loadavg_before']} / {gs['loadavg_after']}"
            ),
            "",
        ]
    mm = r.get("mmap")
    if mm:
        row = mm["row"]
        out += [
            "## Data larger than memory (`make bench-scaling`)",
            "",
            mm["setup"],
            "",
            (
                "| file | N x d | peak RssAnon MiB | peak RssAnon / file | RssAnon before fit MiB "
                "| (peak - before) / file | VmHWM MiB | fit s | DEC steps | ACC vs blobs |"
            ),
            "|---|---|---|---|---|---|---|---|---|---|",
            (
                f"| {row['file_bytes'] / 1e9:.2f} GB ({row['file_bytes'] / 2**20:.0f} MiB) | {row['n']:,} x {row['d']} "
                f"| {row['peak_rss_anon_mib']:.0f} | **{row['peak_rss_anon_over_file']:.3f}** "
                f"| {row['rss_anon_before_fit_mib']:.0f} | {row['peak_growth_over_file']:.3f} | {row['vm_hwm_mib']:.0f} "
                f"| {row['fit_s']:.0f} | {row['n_iter']} | {row['acc_vs_blobs']:.3f} |"
            ),
            "",
            f"- target: {mm['target']}",
            *([mm["note"]] if "note" in mm else []),
            f"- how: {mm['measured_how']}",
            (
                f"- command: `{mm['command']}` ({mm['wall_s']:.0f} s wall, file writing included), torch threads "
                f"{row['machine']['torch_num_threads']}, {row['machine']['cpu_model']} ({row['machine']['cpu_count']} "
                f"CPUs), load before/after {mm['loadavg_before']} / {mm['loadavg_after']}"
            ),
            "",
        ]
    tta = r.get("time_to_accuracy")
    if tta:
        out += [
            f"## Time to accuracy on MNIST (ACC >= {tta['target_acc']})",
            "",
            (
                "Compiled by `benchmarks/time_to_accuracy.py` from the quality benchmark's recorded MNIST runs "
                "(`benchmarks/results/<schedule>.md`: command, machine, load); 1 torch thread on the shared "
                "2-core CPU, all 70 000 images, whole pipeline (data loading, pretraining, k-means, DEC)."
            ),
            "",
            (
                "| schedule | config | pretraining steps | seeds | ACC mean ± std (per seed) | pretraining min "
                "| total min per seed | first refresh at ACC 0.88 / 0.95 / 0.97, min (per seed) |"
            ),
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in tta["schedules"]:
            per_seed = ", ".join(f"{a:.3f}" for a in row["acc_per_seed"])
            reached = " / ".join(
                ", ".join("n/a" if m is None else f"{m:.1f}" for m in minutes) for minutes in row["minutes_to"].values()
            )
            out.append(
                f"| [{row['name']}]({row['name']}.md) | `{row['config']}` | {row['pretrain_steps']} "
                f"| {len(row['seeds'])} | {row['acc_mean']:.3f} ± {row['acc_std']:.3f} ({per_seed}) "
                f"| {row['pretrain_min_mean']:.1f} | {row['wall_min_mean']:.1f} | {reached} |"
            )
        out += [
            "",
            (
                f"Fastest schedule whose mean ACC meets the target: **{tta['fastest'] or 'none'}**. "
                "'First refresh at ACC' scores the assignments against the labels at every refresh of P "
                "(n/a: the run predates that record, or never reached that ACC); a real run cannot stop "
                "there, having no labels, so the total time is the honest cost."
            ),
            "",
        ]
    if r.get("profile"):
        out += ["## Where the time goes (torch.profiler, Lightning run, 1 thread)", "", "```", r["profile"], "```", ""]
    out += ["## Left", "", *(f"- {x}" for x in LEFT), ""]
    return "\n".join(out)


# ----------------------------------------------------------------------------- datasets as arrays

IMAGE_SHAPES = {"digits": (1, 8, 8), "usps": (1, 16, 16), "mnist": (1, 28, 28)}
ARRAY_DATASETS = (*IMAGE_SHAPES, "reuters")


def data_dir() -> Path:
    """``DEC_DATA_DIR``, default ``<repo>/../shared/data`` (where the Makefile points it too)."""
    return Path(os.environ.get("DEC_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))


def load_arrays(name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of a dataset for `ArrayDataModule`: float32 features, int64 labels.

    Images in [0, 1], one flat image per row, as DEC-keras scales them; Reuters is the 4-class
    Reuters-21578 tf-idf scaled as `ReutersDataModule` does, densified.
    """
    import numpy as np

    if name == "digits":
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        return (x / 16.0).astype(np.float32), y.astype(np.int64)
    if name == "usps":
        from torchvision.datasets import USPS

        parts = [USPS(str(data_dir() / "usps"), train=t, download=False) for t in (True, False)]
        x = np.concatenate([p.data.reshape(len(p.data), -1) for p in parts]).astype(np.float32) / 255.0
        y = np.concatenate([np.asarray(p.targets) for p in parts]).astype(np.int64)
        return x, y
    if name == "mnist":
        from torchvision.datasets import MNIST

        parts = [MNIST(str(data_dir()), train=t, download=False) for t in (True, False)]
        x = np.concatenate([p.data.numpy().reshape(len(p.data), -1) for p in parts]).astype(np.float32) / 255.0
        y = np.concatenate([p.targets.numpy() for p in parts]).astype(np.int64)
        return x, y
    if name == "reuters":
        from dec_lightning.data import ReutersDataModule

        x, y = ReutersDataModule(data_dir()).load_arrays()
        return x.toarray().astype(np.float32), y.astype(np.int64)
    raise ValueError(f"unknown dataset {name!r}; choose from {sorted(ARRAY_DATASETS)}")


# ----------------------------------------------------------------------------- pretrain + cluster in Python

QUIET = {
    "accelerator": "cpu",
    "devices": 1,
    "logger": False,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
}


def quiet() -> None:
    """One torch thread and no Lightning chatter: many short fits in one process."""
    import logging
    import warnings

    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*clusters are (near-)?empty.*")
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)


def pretrain(
    x: np.ndarray,
    y: np.ndarray,
    seed: int,
    encoder: nn.Module,
    decoder: nn.Module | None,
    batch_size: int,
    **kwargs: Any,
) -> tuple[AutoencoderPretraining, float]:
    """Fit the autoencoder; returns it and its wall time in seconds."""
    import lightning as L

    from dec_lightning.data import ArrayDataModule
    from dec_lightning.modules import AutoencoderPretraining

    L.seed_everything(seed, verbose=False)
    module = AutoencoderPretraining(encoder, decoder, **kwargs)
    start = time.perf_counter()
    L.Trainer(max_steps=module.total_steps, max_epochs=-1, **QUIET).fit(
        module, datamodule=ArrayDataModule(x, labels=y, batch_size=batch_size)
    )
    return module, time.perf_counter() - start


def cluster(
    x: np.ndarray,
    y: np.ndarray,
    seed: int,
    pretrained: AutoencoderPretraining,
    batch_size: int,
    max_steps: int,
    update_interval: int,
    extra_callbacks: Callable[[], list[L.Callback]] = list,
    n_init: int = 20,
    module: type[DEC] | None = None,
    **dec_kwargs: Any,
) -> dict[str, float]:
    """DEC (default), IDEC or DKM from copies of the pretrained modules for exactly ``max_steps`` steps.

    Returns the scores and the wall time. The target distribution P is refreshed every
    ``update_interval`` steps for the KL objective; `DKM` has no P and relabels once per epoch by itself.
    """
    import copy

    import lightning as L

    from dec_lightning.callbacks import KMeansInit, TargetDistributionRefresh
    from dec_lightning.data import ArrayDataModule
    from dec_lightning.modules import DEC

    module = module or DEC
    L.seed_everything(seed, verbose=False)
    model = module(copy.deepcopy(pretrained.encoder), decoder=copy.deepcopy(pretrained.decoder), **dec_kwargs)
    callbacks: list[L.Callback] = [KMeansInit(n_init=n_init)]
    if module.clustering_term == "kl":
        callbacks.append(TargetDistributionRefresh(update_interval=update_interval))
    start = time.perf_counter()
    L.Trainer(max_steps=max_steps, max_epochs=-1, callbacks=callbacks + extra_callbacks(), **QUIET).fit(
        model, datamodule=ArrayDataModule(x, labels=y, batch_size=batch_size)
    )
    return {**model.scores, "seconds": time.perf_counter() - start}


def mean_std(values: list[float]) -> str:
    import numpy as np

    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"
