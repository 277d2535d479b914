"""The graph start against k-means on evaluation data it was not tuned on, paired by seed.

Every setting of the graph start was chosen on selection data only (`start_selection.py`:
digits, synthetic and small tabular sets). Here it is measured once on MNIST, USPS and Reuters,
unchanged: per dataset, recipe (plain DEC, and the best config where there is one) and seed, one
autoencoder is pretrained and clustered twice, from the graph start (``init: graph``) and from
k-means (``init: kmeans``, the paper's), with everything else the config's.

    python benchmarks/start_heldout.py run --dataset usps --recipe plain --seed 0
    python benchmarks/start_heldout.py merge

``run`` writes benchmarks/results/start_heldout/<dataset>_<recipe>_s<seed>.json (one process per
seed, recorded as each finishes); ``merge`` writes benchmarks/results/start_heldout.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks._common import kmeans_init_args
from benchmarks.quality import PROBE, machine_info, run_seed

RESULTS = REPO / "benchmarks" / "results"
RUNS = RESULTS / "start_heldout"
RECIPES = {
    "mnist": {"plain": "configs/mnist_fast.yaml", "best": "configs/mnist_cpu_best.yaml"},
    "usps": {
        "plain": "configs/usps_fast.yaml",
        "best": "configs/usps_fast_aug.yaml",
        "conv": "configs/usps_conv_idec_aug.yaml",
    },
    "reuters": {"plain": "configs/reuters_fast.yaml"},
}
STARTS = ("graph", "kmeans")


def start_config(config: str, init: str, workdir: Path, with_probe: bool, data_dir: str | None) -> Path:
    """``config`` with its `KMeansInit` set to ``init`` (and the probe, when it must replace the whole
    callback list), logs under ``workdir`` and data from ``data_dir``; written to ``workdir``."""
    cfg = yaml.safe_load((REPO / config).read_text())
    kmeans_init_args(cfg)["init"] = init
    if with_probe:
        cfg["trainer"]["callbacks"].append({"class_path": PROBE})
    cfg["trainer"]["logger"]["init_args"]["save_dir"] = str(workdir / init)
    if data_dir:
        cfg["data"]["init_args"]["data_dir"] = data_dir
    path = workdir / f"{init}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def arm(record: dict[str, Any]) -> dict[str, Any]:
    keep = ("acc", "nmi", "ari", "baseline", "dec_steps", "stopped_by_tol", "wall_s")
    return {k: record[k] for k in keep}


def run(
    dataset: str, recipe: str, seed: int, threads: int, data_dir: str | None, extra: list[str], runs: Path = RUNS
) -> Path:
    import torch

    torch.set_num_threads(threads)
    config = RECIPES[dataset][recipe]
    with tempfile.TemporaryDirectory(prefix="dec-heldout-") as tmp:
        workdir = Path(tmp)
        graph = start_config(config, "graph", workdir, with_probe=False, data_dir=data_dir)
        kmeans = start_config(config, "kmeans", workdir, with_probe=True, data_dir=data_dir)
        load = os.getloadavg()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # extra comes again after the k-means config, which would otherwise reset what it overrides
            variant = {"kmeans": ["--config", str(kmeans), *extra]}
            record = run_seed(str(graph), seed, data_dir, extra, workdir, variant)
    fallback = [str(w.message) for w in caught if type(w.message).__name__ == "GraphStartWarning"]
    result = {
        "dataset": dataset,
        "recipe": recipe,
        "config": config,
        "seed": seed,
        "objective": record["objective"],
        "graph": {**arm(record), "fallback": fallback[0] if fallback else None},
        "kmeans": arm(record["variants"]["kmeans"]),
        "pretrain_steps": record["pretrain_steps"],
        "extra_args": extra,
        "machine": machine_info(),
        "load_average_start": load,
        "load_average_end": os.getloadavg(),
    }
    runs.mkdir(parents=True, exist_ok=True)
    out = runs / f"{dataset}_{recipe}_s{seed}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    return out


def merge() -> dict[str, Any]:
    selection = json.loads((RESULTS / "start_selection.json").read_text())
    runs = [json.loads(p.read_text()) for p in sorted(RUNS.glob("*.json"))]
    evaluation: dict[str, Any] = {}
    for dataset, recipes in RECIPES.items():
        for recipe, config in recipes.items():
            mine = sorted(
                (r for r in runs if (r["dataset"], r["recipe"]) == (dataset, recipe)), key=lambda r: r["seed"]
            )
            if not mine:
                continue
            entry: dict[str, Any] = {"config": config, "objective": mine[0]["objective"], "seeds": []}
            for start in STARTS:
                for metric in ("acc", "nmi", "ari"):
                    values = [r[start][metric] for r in mine]
                    entry[f"{start}_{metric}_mean"] = statistics.fmean(values)
                    entry[f"{start}_{metric}_std"] = statistics.pstdev(values)
                entry[f"{start}_start_acc_mean"] = statistics.fmean(r[start]["baseline"]["acc"] for r in mine)
                entry[f"{start}_wall_s_mean"] = statistics.fmean(r[start]["wall_s"]["total"] for r in mine)
            entry["acc_diff_mean"] = entry["graph_acc_mean"] - entry["kmeans_acc_mean"]
            entry["graph_ahead_seeds"] = sum(r["graph"]["acc"] > r["kmeans"]["acc"] for r in mine)
            entry["fallbacks"] = sum(bool(r["graph"]["fallback"]) for r in mine)
            entry["seeds"] = [
                {
                    "seed": r["seed"],
                    **{f"{s}_{m}": r[s][m] for s in STARTS for m in ("acc", "nmi", "ari")},
                    **{f"{s}_start_acc": r[s]["baseline"]["acc"] for s in STARTS},
                    "fallback": r["graph"]["fallback"],
                    "cpu": r["machine"]["cpu"],
                    "extra_args": r["extra_args"],
                    "load_average_start": r["load_average_start"][0],
                    "wall_s": {s: round(r[s]["wall_s"]["total"]) for s in STARTS},
                }
                for r in mine
            ]
            evaluation[f"{dataset}/{recipe}"] = entry
    names = {key.split("/")[0] for key in evaluation}
    diffs = [e["acc_diff_mean"] for e in evaluation.values()]
    payload = {
        "selection": sorted({name.rsplit("_s", 1)[0] if "_s" in name else name for name in selection["sets"]}),
        "evaluation": sorted(names),
        "chosen_setting": selection["chosen"],
        "graph_minus_kmeans_acc_mean": statistics.fmean(diffs) if diffs else None,
        "verdict": None if not diffs else ("graph" if statistics.fmean(diffs) > 0 else "kmeans"),
        "command": "python benchmarks/start_heldout.py run --dataset D --recipe R --seed S; "
        "python benchmarks/start_heldout.py merge",
        "results": evaluation,
    }
    assert not set(payload["selection"]) & set(payload["evaluation"]), "selection and evaluation must be disjoint"
    (RESULTS / "start_heldout.json").write_text(json.dumps(payload, indent=2) + "\n")
    (RESULTS / "start_heldout.md").write_text(markdown(payload))
    return payload


def markdown(payload: dict[str, Any]) -> str:
    lines = [
        "# Graph start against k-means, held out",
        "",
        (
            f"Settings chosen on selection data only ([start_selection.md](start_selection.md)): `{payload['chosen_setting']}`. "
            f"Selection: {', '.join(payload['selection'])}. Evaluation (never used to choose): "
            f"{', '.join(payload['evaluation'])}. Command: `{payload['command']}`."
        ),
        "",
        (
            "Per seed one autoencoder, clustered from each start. Start ACC: the start's own assignments, before any "
            "DEC step."
        ),
        "",
        (
            "| dataset / recipe | config | objective | seeds | k-means start: ACC | NMI | ARI | graph start: ACC | NMI "
            "| ARI | start ACC k-means / graph | graph ahead (seeds) | fallbacks |"
        ),
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key, e in payload["results"].items():
        lines.append(
            f"| {key} | `{e['config']}` | {e['objective']} | {len(e['seeds'])} "
            f"| {e['kmeans_acc_mean']:.3f} ± {e['kmeans_acc_std']:.3f} | {e['kmeans_nmi_mean']:.3f} "
            f"| {e['kmeans_ari_mean']:.3f} | {e['graph_acc_mean']:.3f} ± {e['graph_acc_std']:.3f} "
            f"| {e['graph_nmi_mean']:.3f} | {e['graph_ari_mean']:.3f} "
            f"| {e['kmeans_start_acc_mean']:.3f} / {e['graph_start_acc_mean']:.3f} "
            f"| {e['graph_ahead_seeds']} of {len(e['seeds'])} | {e['fallbacks']} |"
        )
    if payload["verdict"]:
        lines += [
            "",
            (
                f"Mean ACC difference, graph minus k-means, over the rows: {payload['graph_minus_kmeans_acc_mean']:+.3f}: "
                f"verdict **{payload['verdict']}**."
            ),
        ]
    lines += [
        "",
        "## Per seed",
        "",
        "| row | seed | ACC k-means / graph | start ACC k-means / graph | CPU | load | wall s k-means / graph | extra args |",
    ]
    lines.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for key, e in payload["results"].items():
        for s in e["seeds"]:
            lines.append(
                f"| {key} | {s['seed']} | {s['kmeans_acc']:.3f} / {s['graph_acc']:.3f} "
                f"| {s['kmeans_start_acc']:.3f} / {s['graph_start_acc']:.3f} | {s['cpu']} | {s['load_average_start']:.1f} "
                f"| {s['wall_s']['kmeans']} / {s['wall_s']['graph']} | `{' '.join(s['extra_args'])}` |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> Any:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("run", help="one dataset, recipe and seed")
    one.add_argument("--dataset", required=True, choices=sorted(RECIPES))
    one.add_argument("--recipe", default="plain")
    one.add_argument("--seed", type=int, required=True)
    one.add_argument("--threads", type=int, default=1)
    one.add_argument("--data-dir", default=os.environ.get("DEC_DATA_DIR"))
    one.add_argument("--runs-dir", type=Path, default=RUNS, help="where the per-seed json goes")
    one.add_argument("extra", nargs=argparse.REMAINDER, help="after --: more dec-lightning arguments")
    sub.add_parser("merge", help="write start_heldout.{json,md} from the runs")
    args = parser.parse_args(argv)
    if args.command == "merge":
        return merge()
    if args.recipe not in RECIPES[args.dataset]:
        parser.error(f"{args.dataset} has the recipes {sorted(RECIPES[args.dataset])}")
    start = time.perf_counter()
    extra = [a for a in args.extra if a != "--"]
    out = run(args.dataset, args.recipe, args.seed, args.threads, args.data_dir, extra, args.runs_dir)
    print(f"{out} ({time.perf_counter() - start:.0f} s)", flush=True)
    return out


if __name__ == "__main__":
    main()
