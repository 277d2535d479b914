"""DEC with default settings against k-means on small standardised tabular data (issue #16, part 4).

Synthetic data of several sizes and dimensions, each standardised (`StandardScaler`) and
clustered by k-means (scikit-learn, k-means++, ``n_init=20``) and by ``DEC(n_clusters=K,
random_state=seed)`` with every other setting at its default, i.e. ``"auto"`` encoder and
pretraining length (`dec_lightning.estimator.auto_settings`). The same seed draws the data, the
k-means start and DEC's weights. Scores are ARI and NMI against the generating labels.

    OMP_NUM_THREADS=1 python benchmarks/tabular.py --seeds 0 1 2

Writes benchmarks/results/tabular.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs, make_classification
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import loadavg, machine_facts, set_threads, start_name
from dec_lightning import DEC
from dec_lightning.callbacks import KMeansInit
from dec_lightning.estimator import auto_settings

RESULTS = Path(__file__).resolve().parent / "results"
JSON, PAGE = RESULTS / "tabular.json", RESULTS / "tabular.md"

# name -> how to draw it. Blobs: isotropic Gaussians, k-means' own model, spread so that k-means
# is not perfect. Classification: make_classification's clusters on hypercube vertices in the
# informative features, the rest pure noise features (n_redundant=0), one cluster per class.
DATASETS: dict[str, dict[str, Any]] = {
    "blobs_n300_d4_k3": {"kind": "blobs", "n": 300, "d": 4, "k": 3, "cluster_std": 2.5},
    "blobs_n300_d10_k4": {"kind": "blobs", "n": 300, "d": 10, "k": 4, "cluster_std": 5.0},
    "blobs_n1000_d30_k5": {"kind": "blobs", "n": 1000, "d": 30, "k": 5, "cluster_std": 8.0},
    "clf_n400_d8_inf8_k4": {"kind": "classification", "n": 400, "d": 8, "k": 4, "informative": 8, "class_sep": 1.5},
    "clf_n300_d10_inf4_k3": {"kind": "classification", "n": 300, "d": 10, "k": 3, "informative": 4, "class_sep": 2.0},
    "clf_n500_d20_inf5_k4": {"kind": "classification", "n": 500, "d": 20, "k": 4, "informative": 5, "class_sep": 2.0},
    "clf_n1000_d30_inf6_k5": {
        "kind": "classification", "n": 1000, "d": 30, "k": 5, "informative": 6, "class_sep": 2.0,
    },
}  # fmt: skip


def make_data(spec: dict[str, Any], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The dataset of ``spec`` drawn with ``seed``, standardised per feature."""
    if spec["kind"] == "blobs":
        x, y = make_blobs(
            n_samples=spec["n"], n_features=spec["d"], centers=spec["k"], cluster_std=spec["cluster_std"],
            random_state=seed,
        )  # fmt: skip
    else:
        x, y = make_classification(
            n_samples=spec["n"], n_features=spec["d"], n_informative=spec["informative"], n_redundant=0,
            n_classes=spec["k"], n_clusters_per_class=1, class_sep=spec["class_sep"], random_state=seed,
        )  # fmt: skip
    return StandardScaler().fit_transform(x).astype(np.float32), y


def scores(y: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {
        "ari": round(float(adjusted_rand_score(y, labels)), 4),
        "nmi": round(float(normalized_mutual_info_score(y, labels)), 4),
    }


def run_one(name: str, seed: int) -> dict[str, Any]:
    spec = DATASETS[name]
    x, y = make_data(spec, seed)
    start = time.perf_counter()
    km = KMeans(spec["k"], n_init=20, random_state=seed).fit_predict(x)
    km_s = time.perf_counter() - start
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # near-empty cluster warnings are part of what is measured
        dec = DEC(n_clusters=spec["k"], random_state=seed, accelerator="cpu").fit(x)
    dec_s = time.perf_counter() - start
    return {
        "dataset": name,
        "seed": seed,
        "kmeans": {**scores(y, km), "seconds": round(km_s, 2)},
        "dec": {**scores(y, dec.labels_), "seconds": round(dec_s, 1), "cluster_steps": dec.n_iter_},
        "encoder_dims": dec.encoder_dims_,
        "pretrain_steps": dec.pretrain_steps_,
    }


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per dataset: mean and population std over seeds of both methods, and DEC minus k-means."""
    out: dict[str, Any] = {}
    for name in DATASETS:
        mine = sorted((r for r in rows if r["dataset"] == name), key=lambda r: r["seed"])
        if not mine:
            continue
        entry: dict[str, Any] = {"seeds": [r["seed"] for r in mine]}
        for method in ("kmeans", "dec"):
            for metric in ("ari", "nmi"):
                values = [r[method][metric] for r in mine]
                entry[f"{method}_{metric}_mean"] = round(float(np.mean(values)), 4)
                entry[f"{method}_{metric}_std"] = round(float(np.std(values)), 4)
        entry["ari_diff_mean"] = round(entry["dec_ari_mean"] - entry["kmeans_ari_mean"], 4)
        entry["nmi_diff_mean"] = round(entry["dec_nmi_mean"] - entry["kmeans_nmi_mean"], 4)
        entry["dec_ari_at_least_kmeans_seeds"] = sum(r["dec"]["ari"] >= r["kmeans"]["ari"] for r in mine)
        out[name] = entry
    return out


def _ms(entry: dict[str, Any], key: str) -> str:
    return f"{entry[key + '_mean']:.3f} ± {entry[key + '_std']:.3f}"


def page(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        "# DEC with default settings against k-means on small tabular data",
        "",
        "Generated by `benchmarks/tabular.py` from `tabular.json`; do not edit by hand.",
        "",
        f"    {result['command']}",
        "",
        (
            f"- Machine: {m['cpu_model']} ({m['cpu_count']} logical CPUs, shared with other jobs), torch {m['torch']}, "
            f"lightning {m['lightning']}, {m['torch_num_threads']} torch thread(s), "
            f"OMP_NUM_THREADS={m['omp_num_threads_env']}"
        ),
        f"- Load average (1/5/15 min) before: {result['loadavg_before']}, after: {result['loadavg_after']}",
        f"- Wall time: {result['wall_s']:.0f} s; seeds {result['seeds']}",
        "",
        (
            "Every dataset is standardised per feature, then clustered by k-means (scikit-learn, k-means++, "
            "n_init=20) and by `DEC(n_clusters=K, random_state=seed)` with all other settings at their defaults "
            '(`hidden_dims`, `embedding_dim` and `pretrain_steps` "auto"). ARI and NMI against the generating '
            "labels; mean ± population std over the seeds; the same seed draws the data, k-means' start and DEC's "
            "weights."
        ),
        "",
        (
            "| dataset | n x d, K | auto encoder, pretraining steps | k-means ARI | DEC ARI | k-means NMI | DEC NMI "
            "| DEC - k-means ARI | seeds DEC ARI >= k-means | DEC s per fit |"
        ),
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, entry in result["summary"].items():
        spec = DATASETS[name]
        rows = [r for r in result["rows"] if r["dataset"] == name]
        dims = "-".join(str(d) for d in rows[0]["encoder_dims"])
        seconds = np.mean([r["dec"]["seconds"] for r in rows])
        lines.append(
            f"| {name} | {spec['n']} x {spec['d']}, {spec['k']} | {dims}, {rows[0]['pretrain_steps']} "
            f"| {_ms(entry, 'kmeans_ari')} | {_ms(entry, 'dec_ari')} | {_ms(entry, 'kmeans_nmi')} "
            f"| {_ms(entry, 'dec_nmi')} | {entry['ari_diff_mean']:+.3f} | {entry['dec_ari_at_least_kmeans_seeds']}"
            f"/{len(entry['seeds'])} | {seconds:.0f} |"
        )
    lines += [
        "",
        "Per seed (ARI k-means / DEC):",
        "",
    ]
    for name in result["summary"]:
        rows = sorted((r for r in result["rows"] if r["dataset"] == name), key=lambda r: r["seed"])
        per_seed = ", ".join(f"{r['seed']}: {r['kmeans']['ari']:.3f} / {r['dec']['ari']:.3f}" for r in rows)
        lines.append(f"- {name}: {per_seed}")
    lines += ["", "## Verdict", "", *result.get("notes", []), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--render", action="store_true", help="only rewrite tabular.md (and notes) from tabular.json")
    args = parser.parse_args()
    if args.render:
        result = json.loads(JSON.read_text())
        result["notes"] = NOTES
        JSON.write_text(json.dumps(result, indent=2) + "\n")
        PAGE.write_text(page(result))
        return
    set_threads(args.threads)
    command = "OMP_NUM_THREADS=1 python benchmarks/tabular.py " + " ".join(sys.argv[1:])
    before, start = loadavg(), time.perf_counter()
    rows = []
    for seed in args.seeds:
        for name in args.datasets:
            rows.append(run_one(name, seed))
            print(json.dumps(rows[-1]), flush=True)
    result = {
        "command": command.strip(),
        "seeds": args.seeds,
        "start": start_of(DEC()),
        "machine": machine_facts(),
        "loadavg_before": before,
        "loadavg_after": loadavg(),
        "wall_s": round(time.perf_counter() - start, 1),
        "auto_rule_examples": {
            f"n{spec['n']}_d{spec['d']}": auto_settings(spec["n"], spec["d"]) for spec in DATASETS.values()
        },
        "rows": rows,
    }
    result["summary"] = summarise(rows)
    result["notes"] = NOTES
    RESULTS.mkdir(exist_ok=True)
    JSON.write_text(json.dumps(result, indent=2) + "\n")
    PAGE.write_text(page(result))
    print(PAGE.read_text())


def start_of(estimator: DEC) -> str:
    """The start DEC's centres come from with the estimator's defaults, as the results table names it."""
    # the estimator keeps KMeansInit's default neighbours
    return start_name(estimator.init, estimator.micro_clusters, KMeansInit().n_neighbors)


# What the numbers say, kept beside the code that produced them; re-read after every run.
NOTES: list[str] = [
    (
        "- With the estimator's default start, the graph start (2026-12-04): **as good as k-means or better "
        "on 4 of 7 tables** (mean ARI within 0.014 or above). Level on the isotropic Gaussian blobs, "
        "k-means' own model (+0.006, -0.011, -0.014); well ahead on make_classification's clusters with no or "
        "few noise features (8 informative of 8: +0.162, 3/3 seeds; 4 of 10: +0.306, 3/3 seeds)."
    ),
    (
        "- **Behind k-means on the noisy tables**: 5 informative of 20 features -0.055 (1/3 seeds), 6 of 30 "
        "-0.182 (0/3; 0.258 / 0.886 / 0.597 against 0.488 / 0.898 / 0.901). The autoencoder spends its "
        "20-dimensional embedding on the noise features as much as on the informative ones. Mean DEC - "
        "k-means ARI over the 7 tables: +0.030, against +0.026 with the k-means start (the previous run of "
        "this page, in git history: -0.006 and -0.072 on those two tables): the graph start gains on the "
        "clean tables and loses on the noisy ones."
    ),
    (
        "- The auto encoder rule was chosen from these runs, and the graph start's settings partly on them "
        "(its selection data include these tables, scored at the start itself), so this page is not an "
        "independent test. The held-out one is benchmarks/results/start_heldout.md."
    ),
    (
        "- The paper's d-500-500-2000-10 (the previous default) was tried on two of these tables in "
        "exploratory single-seed runs (blobs_n300_d10_k4 and clf_n300_d10_inf4_k3, seed 0: ARI 0.691 and "
        "0.858 against k-means' 0.708 and 0.858) at 95-112 s per fit on a loaded machine, 4-7x the "
        "auto encoder's time; it was not run on all tables."
    ),
    (
        "- Wall times are from a 2-core AMD EPYC shared with other benchmarks (load 2-3.5). A fit is "
        "deterministic for a given random_state."
    ),
]

if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
