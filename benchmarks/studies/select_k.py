"""Measured: what ``dec-lightning select-k`` picks, with the whole table, the cost and the machine.

    python benchmarks/studies/select_k.py --name digits -- --config configs/digits.yaml --k 2:15
    python benchmarks/studies/select_k.py --name mnist -- --config configs/mnist_fast.yaml --k 5:15 \\
        --data.init_args.data_dir ../shared/data --pretrain.finetune_steps 2190 --trainer.max_steps 840

Everything after ``--`` is passed to ``dec-lightning select-k`` as it is, run in-process through
`run_cli` from the repository root with one torch thread. Writes
``benchmarks/studies/results/select_k_<name>.csv`` (the command's table, one row per K) and ``.md``
(the command, seed, machine, torch threads, load average, wall time, the table and the pick).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / "results"
sys.path.insert(0, str(REPO))

from benchmarks._common import loadavg, machine_facts, set_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--name", required=True, help="results go to benchmarks/studies/results/select_k_<name>.{csv,md}"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--note", default="", help="a sentence for the Markdown page (e.g. the schedule)")
    parser.add_argument("cli_args", nargs=argparse.REMAINDER, help="-- then the select-k arguments")
    args = parser.parse_args()
    cli_args = [a for a in args.cli_args if a != "--"]
    if "--output_dir" in cli_args:
        parser.error("--output_dir is set by this script")
    os.chdir(REPO)
    set_threads(args.threads)
    from dec_lightning.cli.main import run_cli

    load_before = loadavg()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="select_k_") as out:
        cli = run_cli(["select-k", *cli_args, "--trainer.enable_progress_bar", "false", "--output_dir", out])
        wall = time.perf_counter() - start
        RESULTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(cli.result.csv_path, RESULTS / f"select_k_{args.name}.csv")
    load_after = loadavg()
    result = cli.result
    facts = machine_facts()
    command = (
        f"python benchmarks/studies/select_k.py --name {args.name} --threads {args.threads} -- {shlex.join(cli_args)}"
    )
    lines = [
        f"# select-k on {args.name}: measured",
        "",
        f"Command (from the repository root): `{command}`",
        f"(runs `dec-lightning select-k {shlex.join(cli_args)} --trainer.enable_progress_bar false` in-process).",
        (
            f"Seed: {cli.config.seed_everything} (the split, the pretraining and every K's DEC run; "
            f"held-out fraction {cli.config.holdout})."
        ),
        (
            f"Machine: {facts['cpu_model']}, {facts['cpu_count']} CPUs, {args.threads} torch thread(s), "
            f"torch {facts['torch']}, lightning {facts['lightning']}."
        ),
        f"Load average (1, 5, 15 min): {load_before} before, {load_after} after.",
        f"Wall time: {wall:.0f} s (pretraining once + DEC for {len(result.scores)} values of K).",
        *([f"Note: {args.note}"] if args.note else []),
        "",
        f"**Pick: K = {result.recommended_k}.** Rule: {result.rule}.",
        "",
        result.table(),
        "",
        (
            "G = L_train / L_holdout, each L the mean KL(P || Q) of DEC's final model on that split with P "
            "computed from the split's own Q (DEC eqs. 2-3). Silhouette: of the held-out embedding under its "
            "DEC labels (a seeded sample of at most --silhouette_samples rows). ACC/NMI: held-out split against "
            "the labels, for reference only (the pick does not use them). "
            f"Table as CSV: [select_k_{args.name}.csv](select_k_{args.name}.csv)."
        ),
        "",
    ]
    (RESULTS / f"select_k_{args.name}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
