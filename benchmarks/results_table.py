"""The results tables: docs/results.md (every measured run) and README.md's recipe table.

    python benchmarks/results_table.py            # print both tables
    python benchmarks/results_table.py --write    # replace them between their markers in docs/results.md and README.md

Numbers come only from the committed result files (``benchmarks/results/<stem>.json``, written by
``make reproduce`` / ``benchmarks/quality.py``), never typed by hand. Each file names the start DEC
ran from (``"start"``: k-means or the graph start with its settings); a listed file without it is
an error. `tests/test_results_table.py` keeps both pages in sync with the files.

To re-point a recipe at a new measurement, change its ``result`` stem in `RECIPES`; to show a new
file in docs/results.md, add its stem to `ROWS`.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any, NamedTuple

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
README = REPO / "README.md"
RESULTS_PAGE = REPO / "docs" / "results.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
RECIPES_BEGIN, RECIPES_END = "<!-- recipes:begin -->", "<!-- recipes:end -->"


class Recipe(NamedTuple):
    """One row of the README's "pick a recipe" table: a goal, what to run, and the measurement of it."""

    goal: str
    config: str  # the config file a user runs; must be the one the result file measured
    result: str  # stem of benchmarks/results/<stem>.json, or "start_heldout:<dataset>/<recipe>"
    timing: str | None = None  # a held-out row's minutes: stem of a 2-core CPU run of the same config


HELDOUT = "start_heldout:"
RECIPES = (
    Recipe("try it: bundled digits (`make demo`)", "configs/digits.yaml", "digits_graph"),
    Recipe(
        "plain DEC, the paper's model and loss, on MNIST",
        "configs/mnist_fast.yaml",
        HELDOUT + "mnist/plain",
        "mnist_plain_dec",
    ),
    Recipe(
        "the best MNIST clustering on a CPU", "configs/mnist_cpu_best.yaml", HELDOUT + "mnist/best", "mnist_cpu_best"
    ),
    Recipe("USPS (plain DEC)", "configs/usps_fast.yaml", HELDOUT + "usps/plain", "usps_plain_dec"),
    Recipe(
        "the best USPS clustering (conv autoencoder, IDEC + augmentation)",
        "configs/usps_conv_idec_aug.yaml",
        HELDOUT + "usps/conv",
        "usps_conv_idec_aug",
    ),
    Recipe("Reuters (text, tf-idf)", "configs/reuters_fast.yaml", HELDOUT + "reuters/plain", "reuters"),
)
# Your own data: the estimator with its automatic settings, measured against k-means on synthetic tables.
OWN_DATA = Recipe("your own data (a feature table)", "`DEC(n_clusters=K).fit(X)` (estimator)", "tabular")

# docs/results.md: every measured run, by dataset, in the order they were run.
ROWS = {
    "digits": ("digits", "digits_graph"),
    "MNIST": (
        "mnist",
        "mnist_e50",
        "mnist_e50_lw",
        "mnist_plain_pytorchinit",
        "mnist_plain_glorot",
        "mnist_plain_dec",
        "mnist_fast_idec_aug_short",
        "mnist_fast_idec_aug",
        "mnist_fast_kl_rec_aug",
        "mnist_conv_idec_aug_e25",
        "mnist_idec_aug_gpu_kmeans",
        "mnist_idec_aug_gpu_graph",
        "mnist_cpu_best_unfused",
        "mnist_cpu_best_ncut",
        "mnist_cpu_best_no_cap",
        "mnist_cpu_best",
    ),
    "USPS": (
        "usps",
        "usps_tuned",
        "usps_plain_graph",
        "usps_plain_dec_no_cap",
        "usps_plain_dec",
        "usps_plain_dec_aug",
        "usps_conv_idec_aug",
    ),
    "Reuters": ("reuters",),
}
# Published reference points, quoted for comparison (not measured here).
ANCHORS = (
    "| MNIST, DEC paper (Xie et al., 2016, Table 2) | | | DEC | 0.843 | | | | | |",
    "| MNIST, DEC-keras (XifengGuo/DEC-keras README) | | | DEC | 0.912 | | | | | |",
)


def load(stem: str) -> dict[str, Any]:
    """A result file; it must exist and name its start."""
    path = RESULTS / f"{stem}.json"
    if not path.is_file():
        raise SystemExit(f"results_table: {path} is listed but missing")
    result = json.loads(path.read_text())
    if not result.get("start"):
        raise SystemExit(f'results_table: {path} has no "start" (k-means, or graph with its settings); add it')
    return result


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _acc(result: dict[str, Any]) -> str:
    return f"{result['acc_mean']:.3f} ± {result['acc_std']:.3f}"


def _objective(result: dict[str, Any]) -> str:
    return result.get("objective", "not recorded").replace("(P||Q)", "")


def _where(result: dict[str, Any]) -> str:
    machine = result.get("machine", {})
    return f"{machine['gpu']} GPU" if machine.get("gpu") else f"{machine.get('cores', '?')} CPU cores"


def row(stem: str) -> str:
    """One line of docs/results.md."""
    s = load(stem)
    minutes = s["wall_s_mean"] / 60
    return (
        f"| [{stem}](../benchmarks/results/{stem}.md) | `{s['config']}` | {s['start']} | {_objective(s)} | {_acc(s)} | "
        f"{_fmt(s.get('nmi_mean'))} | {_fmt(s.get('ari_mean'))} | {_fmt(s.get('baseline_acc_mean'))} | "
        f"{_fmt(s.get('target_acc'))} | {len(s['seeds'])} / {minutes:.1f} min, {_where(s)} |"
    )


def table() -> str:
    header = (
        "| run | config | start | objective | ACC (mean ± std) | NMI | ARI | start ACC | target ACC "
        "| seeds / wall per seed |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    )
    return "\n".join([header, *(row(stem) for stems in ROWS.values() for stem in stems), *ANCHORS])


def recipe_row(recipe: Recipe) -> str:
    """One line of the README's recipe table, from the recipe's result file."""
    if recipe.result.startswith(HELDOUT):
        return heldout_row(recipe)
    s = load(recipe.result)
    if s["config"] != recipe.config:
        raise SystemExit(f"results_table: {recipe.result}.json measured {s['config']}, not {recipe.config}")
    if s.get("machine", {}).get("gpu"):
        raise SystemExit(f"results_table: {recipe.result}.json ran on a GPU; the recipe table is for 2 CPU cores")
    seeds = len(s["seeds"])
    acc = _acc(s) + ("" if seeds == 5 else f" ({seeds} seeds)")
    page = f"[{acc}](benchmarks/results/{recipe.result}.md)"
    return (
        f"| {recipe.goal} | `{recipe.config}` | {page} | {s['wall_s_mean'] / 60:.0f} | {s['start']} / {_objective(s)} |"
    )


def heldout_row(recipe: Recipe) -> str:
    """A recipe measured by benchmarks/start_heldout.py: ACC of its graph-start arm (the shipped start),
    minutes from a 2-core CPU run of the same config (``timing``; it ran an earlier start setting)."""
    heldout = json.loads((RESULTS / "start_heldout.json").read_text())
    key = recipe.result.removeprefix(HELDOUT)
    e = heldout["results"][key]
    if e["config"] != recipe.config:
        raise SystemExit(f"results_table: start_heldout {key} measured {e['config']}, not {recipe.config}")
    seeds = len(e["seeds"])
    acc = f"{e['graph_acc_mean']:.3f} ± {e['graph_acc_std']:.3f}" + ("" if seeds == 5 else f" ({seeds} seeds)")
    page = f"[{acc}](benchmarks/results/start_heldout.md) †"
    timing = load(recipe.timing)
    if timing["config"] != recipe.config or timing.get("machine", {}).get("gpu"):
        raise SystemExit(f"results_table: {recipe.timing}.json is no 2-core CPU run of {recipe.config}")
    objective = e["objective"].replace("(P||Q)", "")
    minutes = timing["wall_s_mean"] / 60
    return f"| {recipe.goal} | `{recipe.config}` | {page} | {minutes:.0f} † | graph (default) / {objective} |"


def own_data_row(recipe: Recipe = OWN_DATA) -> str:
    """The estimator's row: DEC against k-means (ARI) on the synthetic tables of benchmarks/tabular.py."""
    s = load(recipe.result)
    diffs = [v["ari_diff_mean"] for v in s["summary"].values()]
    seeds = max(len(v["seeds"]) for v in s["summary"].values())
    minutes = statistics.median(r["dec"]["seconds"] for r in s["rows"]) / 60
    page = f"[ARI {min(diffs):+.3f} to {max(diffs):+.3f} against k-means](benchmarks/results/{recipe.result}.md)"
    page += f" ({len(diffs)} synthetic tables, {seeds} seeds)"
    return f"| {recipe.goal} | {recipe.config} | {page} | {minutes:.1f} | {s['start']} / DEC: KL |"


def recipes() -> str:
    header = (
        "| goal | config | ACC, mean ± std (5 seeds unless marked) | min per seed (2 CPU cores) | start / objective |\n"
        "| --- | --- | --- | --- | --- |"
    )
    return "\n".join([header, *(recipe_row(r) for r in RECIPES), own_data_row()])


def replaced(text: str, begin: str, end: str, body: str) -> str:
    start, stop = text.index(begin) + len(begin), text.index(end)
    return text[:start] + "\n" + body + "\n" + text[stop:]


def readme_with_table(text: str) -> str:
    """README.md with its recipe table regenerated."""
    return replaced(text, RECIPES_BEGIN, RECIPES_END, recipes())


def results_page_with_table(text: str) -> str:
    """docs/results.md with its table of every run regenerated."""
    return replaced(text, BEGIN, END, table())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="update docs/results.md and README.md in place")
    if parser.parse_args().write:
        RESULTS_PAGE.write_text(results_page_with_table(RESULTS_PAGE.read_text()))
        README.write_text(readme_with_table(README.read_text()))
    else:
        print(recipes(), table(), sep="\n\n")


if __name__ == "__main__":
    main()
