"""Render the README's results table from ``benchmarks/results/<dataset>.json``.

    python benchmarks/results_table.py            # print the table
    python benchmarks/results_table.py --write    # replace it in README.md between the markers

Numbers come only from the committed result files (written by ``make reproduce``); a dataset
without one is listed as not measured. `tests/test_results_table.py` keeps README in sync.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
README = REPO / "README.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
DATASETS = ("digits", "mnist", "usps", "reuters")
# Other schedules of the same datasets, listed when measured (``quality.py --name``).
VARIANTS = (
    "mnist_e50",
    "mnist_e50_lw",
    "mnist_fast_idec_aug_short",
    "mnist_fast_idec_aug",
    "mnist_fast_kl_rec_aug",
    "mnist_conv_idec_aug_e25",
    "mnist_plain_glorot",
    "mnist_plain_pytorchinit",
    "mnist_plain_dec",
    "mnist_cpu_best_no_cap",
    "mnist_cpu_best",
    "mnist_idec_aug_gpu_kmeans",
    "mnist_idec_aug_gpu_graph",
    "usps_plain_graph",
    "usps_plain_dec_no_cap",
    "usps_plain_dec",
    "usps_plain_dec_aug",
    "usps_tuned",
    "usps_conv_idec_aug",
)
# Published reference points, quoted for comparison (not measured here).
ANCHORS = (
    "| MNIST, DEC paper (Xie et al., 2016, Table 2) | | DEC | 0.843 | | | | | |",
    "| MNIST, DEC-keras (XifengGuo/DEC-keras README) | | DEC | 0.912 | | | | | |",
)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def row(dataset: str) -> str:
    path = RESULTS / f"{dataset}.json"
    if not path.is_file():
        return f"| {dataset} | not measured | | | | | | | |"
    s = json.loads(path.read_text())
    objective = s.get("objective", "not recorded").replace("(P||Q)", "")
    if s.get("acc_mean") is None:
        page = f"not measured (see [{dataset}.md](benchmarks/results/{dataset}.md))"
        return f"| {dataset} | `{s['config']}` | {objective} | {page} | | | | | |"
    acc = f"{s['acc_mean']:.3f} ± {s['acc_std']:.3f}"
    target = "n/a" if s.get("target_acc") is None else f"{s['target_acc']:.3f}"
    return (
        f"| [{dataset}](benchmarks/results/{dataset}.md) | `{s['config']}` | {objective} | {acc} | {_fmt(s.get('nmi_mean'))} | "
        f"{_fmt(s.get('ari_mean'))} | {_fmt(s.get('baseline_acc_mean'))} | {target} | "
        f"{len(s['seeds'])} / {s['wall_s_mean']:.0f} s |"
    )


def table() -> str:
    header = (
        "| dataset | config | objective | ACC (mean ± std) | NMI | ARI | AE + k-means ACC | target ACC "
        "| seeds / wall per seed |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    )
    variants = [row(v) for v in VARIANTS if (RESULTS / f"{v}.json").is_file()]
    return "\n".join([header, *(row(d) for d in DATASETS), *variants, *ANCHORS])


def readme_with_table(text: str) -> str:
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[:start] + "\n" + table() + "\n" + text[end:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="update README.md in place")
    if parser.parse_args().write:
        README.write_text(readme_with_table(README.read_text()))
    else:
        print(table())


if __name__ == "__main__":
    main()
