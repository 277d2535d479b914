"""Why late pretraining steps are slower than early ones on a CPU, and what `FlushDenormals` and fused Adam buy.

    OMP_NUM_THREADS=1 python benchmarks/studies/denormals.py --data-dir ../shared/data

The paper's MNIST autoencoder (784-500-500-2000-10 and its mirror, ``--init`` as in
``configs/mnist_fast.yaml``) is trained ``--warm-epochs`` epochs with Adam 1e-3, batch 256, as our
configs pretrain it. From that state (weights and Adam moments copied), ``--steps`` more steps are
timed four ways, alternating (a b c d, d c b a, ...) so that the shared machine's load hits all
alike: Adam's default update or ``Adam(fused=True)``, each with subnormal floats kept or flushed to
zero (``torch.set_flush_denormal``, what `dec_lightning.callbacks.FlushDenormals` sets). The count of
subnormal Adam moments at the start says why: a moment whose gradient stays zero decays through the
subnormal range, where x86 arithmetic is slow. Writes ``benchmarks/studies/results/denormals.{json,md}``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
from torch import Tensor, nn

from benchmarks._common import loadavg, set_threads, spread
from benchmarks.quality import machine_info, portable_command
from benchmarks.throughput import BATCH, train_steps
from dec_lightning.data import MNISTDataModule
from dec_lightning.encoders.mlp import MLPDecoder, MLPEncoder

DIMS = (784, 500, 500, 2000, 10)
LR = 1e-3
RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = {  # name: (fused Adam, flush denormals)
    "default Adam": (False, False),
    "default Adam + FlushDenormals": (False, True),
    "fused Adam": (True, False),
    "fused Adam + FlushDenormals": (True, True),
}


def subnormal_count(tensors: list[Tensor]) -> int:
    tiny = torch.finfo(torch.float32).tiny
    return sum(int(((t != 0) & (t.abs() < tiny)).sum()) for t in tensors)


def adam_moments(optimizer: torch.optim.Optimizer) -> list[Tensor]:
    return [v for s in optimizer.state.values() for k, v in s.items() if k in ("exp_avg", "exp_avg_sq")]


def timed_from(state: dict[str, Any], x: Tensor, fused: bool, flush: bool, steps: int, seed: int) -> float:
    """Milliseconds per step of ``steps`` steps resumed from ``state``, with these two settings."""
    model = copy.deepcopy(state["model"])
    optimizer = torch.optim.Adam(model.parameters(), lr=LR, fused=True if fused else None)
    saved = copy.deepcopy(state["optimizer"])
    saved["param_groups"][0]["fused"] = True if fused else None
    optimizer.load_state_dict(saved)
    torch.set_flush_denormal(flush)
    try:
        return 1e3 * train_steps(model, optimizer, x, steps, seed) / steps
    finally:
        torch.set_flush_denormal(False)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("DEC_DATA_DIR", "data"))
    parser.add_argument("--warm-epochs", type=int, default=20, help="epochs trained before timing (default Adam)")
    parser.add_argument("--steps", type=int, default=100, help="steps timed per variant and repeat")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--init", default="glorot_uniform", choices=["glorot_uniform", "pytorch"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "denormals.json")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    torch.set_flush_denormal(False)
    torch.manual_seed(args.seed)
    x = torch.from_numpy(MNISTDataModule(args.data_dir).load_arrays()[0]).float()
    model = nn.Sequential(MLPEncoder(DIMS, init=args.init), MLPDecoder(DIMS, init=args.init))
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    warm_steps = args.warm_epochs * (len(x) // BATCH)
    load_start = loadavg()
    warm_s = train_steps(model, optimizer, x, warm_steps, args.seed)
    state = {"model": model, "optimizer": optimizer.state_dict()}
    moments = adam_moments(optimizer)
    ms: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for r in range(args.repeats):
        for name in list(VARIANTS)[:: 1 if r % 2 == 0 else -1]:
            ms[name].append(timed_from(state, x, *VARIANTS[name], args.steps, seed=args.seed + 1 + r))
            print(f"repeat {r}: {name} {ms[name][-1]:.1f} ms/step", flush=True)
    base = spread(ms["default Adam"])["median"]
    result = {
        "kind": "denormals",
        "command": portable_command(
            ["python", "benchmarks/studies/denormals.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "machine": machine_info(),
        "settings": {k: v for k, v in vars(args).items() if k not in ("data_dir", "out")},
        "warm_steps": warm_steps,
        "warm_ms_per_step": 1e3 * warm_s / max(warm_steps, 1),
        "adam_moments": sum(m.numel() for m in moments),
        "adam_moments_subnormal": subnormal_count(moments),
        "ms_per_step": {name: spread(v) for name, v in ms.items()},
        "speedup": {name: base / spread(v)["median"] for name, v in ms.items()},
        "load_average_start": load_start,
        "load_average_end": loadavg(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    return result


def markdown(r: dict[str, Any]) -> str:
    m, s = r["machine"], r["settings"]
    lines = [
        "# Subnormal floats and fused Adam in late pretraining steps",
        "",
        "Generated by `benchmarks/studies/denormals.py`; do not edit by hand.",
        "",
        f"Reproduce from the repository root: `{r['command']}`.",
        (
            f"Machine: {m['cpu']}, {m['cores']} cores, {s['threads']} torch thread(s), torch {m['torch']}; "
            f"1-min load average {r['load_average_start'][0]:.1f} at the start, {r['load_average_end'][0]:.1f} at the end."
        ),
        (
            f"State: the paper's MNIST autoencoder ({s['init']} init) after {s['warm_epochs']} epochs "
            f"({r['warm_steps']} steps, {r['warm_ms_per_step']:.0f} ms per step on average) of Adam 1e-3, batch {BATCH}; "
            f"{r['adam_moments_subnormal']} of its {r['adam_moments']} Adam moments were subnormal (below 1.2e-38)."
        ),
        f"Timed: {s['steps']} steps from that state per variant and repeat, {s['repeats']} repeats, alternating.",
        "",
        "| variant | ms per step (median) | min - max | speed-up over default Adam |",
        "| --- | --- | --- | --- |",
    ]
    for name, v in r["ms_per_step"].items():
        lines.append(f"| {name} | {v['median']:.1f} | {v['min']:.1f} - {v['max']:.1f} | {r['speedup'][name]:.2f}x |")
    lines += [
        "",
        (
            "FlushDenormals: `dec_lightning.callbacks.FlushDenormals` in `trainer.callbacks` "
            "(`torch.set_flush_denormal(True)` during each fit). Fused Adam: `fused: true` in the optimizer's `init_args`."
        ),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
