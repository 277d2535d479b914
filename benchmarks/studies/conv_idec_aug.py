"""Conv autoencoder + IDEC + augmentation (ConvIDEC-DA) on USPS/MNIST, on whatever schedule fits.

    # a reduced run: pretrain, then cluster; writes benchmarks/studies/results/<dataset>_conv_idec_aug_reduced.json
    OMP_NUM_THREADS=1 python benchmarks/studies/conv_idec_aug.py run --dataset usps --seeds 0 \
        --pretrain_steps 1850 --cluster_steps 1500
    # time steps only (no result), to extrapolate the full schedule of configs/<dataset>_conv_idec_aug.yaml
    OMP_NUM_THREADS=1 python benchmarks/studies/conv_idec_aug.py time --dataset mnist

The settings mirror configs/<dataset>_conv_idec_aug.yaml except for the schedule lengths. The config's
own schedule is measured by the quality benchmark (`<dataset>_conv_idec_aug.json`):

    python benchmarks/quality.py --dataset usps --config configs/usps_conv_idec_aug.yaml --seeds 3 \
        --name usps_conv_idec_aug --target-acc 0.95
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np
import torch
import yaml

from benchmarks._common import IMAGE_SHAPES, cluster, pretrain, quiet
from benchmarks._common import load_arrays as load
from dec_lightning.callbacks import ToleranceStopping
from dec_lightning.data.augment import RandomShiftRotate
from dec_lightning.encoders import ConvDecoder, ConvEncoder
from dec_lightning.modules import DEC
from dec_lightning.modules.dataset_pass import EVAL_BATCH_SIZE

RESULTS = Path(__file__).resolve().parent / "results"


def settings(dataset: str) -> dict:
    config = yaml.safe_load((ROOT / "configs" / f"{dataset}_conv_idec_aug.yaml").read_text())
    callbacks = {c["class_path"].rsplit(".", 1)[1]: c["init_args"] for c in config["trainer"]["callbacks"]}
    return {
        "pretrain_steps": config["pretrain"]["finetune_steps"],
        "pretrain_lr": config["pretrain"]["optimizer"]["init_args"]["lr"],
        "cluster_steps": config["trainer"]["max_steps"],
        "cluster_optimizer": config["model"]["optimizer"],
        "weights": {k: config["model"][k] for k in ("clustering_weight", "reconstruction_weight")},
        "update_interval": callbacks["TargetDistributionRefresh"]["update_interval"],
        "tol": callbacks["ToleranceStopping"]["tol"],
        "batch_size": config["data"]["init_args"]["batch_size"],
        "augment": config["model"]["augment"]["init_args"],
    }


def cluster_optimizer(s: dict, params) -> torch.optim.Optimizer:
    """The config's clustering optimizer (``class_path`` + ``init_args``)."""
    spec = s["cluster_optimizer"]
    return getattr(torch.optim, spec["class_path"].rsplit(".", 1)[1])(params, **spec["init_args"])


def modules(shape: tuple[int, ...]) -> tuple[ConvEncoder, ConvDecoder]:
    return ConvEncoder(shape), ConvDecoder(shape)


def run(dataset: str, seeds: list[int], pretrain_steps: int, cluster_steps: int) -> dict:
    quiet()
    s = settings(dataset)
    x, y = load(dataset)
    shape = IMAGE_SHAPES[dataset]
    augment = RandomShiftRotate(**s["augment"])
    rows = []
    for seed in seeds:
        encoder, decoder = modules(shape)
        ae, pretrain_seconds = pretrain(
            x, y, seed, encoder, decoder, s["batch_size"], finetune_steps=pretrain_steps, augment=augment,
            optimizer=lambda p: torch.optim.Adam(p, lr=s["pretrain_lr"]),
        )  # fmt: skip
        result = cluster(
            x, y, seed, ae, s["batch_size"], cluster_steps, s["update_interval"],
            extra_callbacks=lambda: [ToleranceStopping(tol=s["tol"])],
            augment=augment, optimizer=lambda p: cluster_optimizer(s, p), **s["weights"],
        )  # fmt: skip
        row = {"seed": seed, "pretrain_seconds": pretrain_seconds, **result}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return {
        "dataset": dataset,
        "n": len(x),
        "config": f"configs/{dataset}_conv_idec_aug.yaml",
        "full_schedule": {"pretrain_steps": s["pretrain_steps"], "cluster_steps": s["cluster_steps"]},
        "run_schedule": {"pretrain_steps": pretrain_steps, "cluster_steps": cluster_steps},
        "rows": rows,
        "acc_mean": float(np.mean([r["acc"] for r in rows])),
    }


def time_steps(dataset: str, steps: int = 20) -> dict:
    """Seconds per pretraining step, per IDEC step and per whole-dataset pass; the full schedule extrapolated."""
    quiet()
    s = settings(dataset)
    x, _ = load(dataset)
    shape = IMAGE_SHAPES[dataset]
    augment = RandomShiftRotate(**s["augment"])
    encoder, decoder = modules(shape)
    model = DEC(encoder, n_clusters=10, decoder=decoder, augment=augment, **s["weights"])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    xt = torch.from_numpy(x)
    model.target = torch.full((len(x), 10), 0.1)
    out = {}
    for name, fn in {
        "pretrain_step": lambda b, i: torch.nn.functional.mse_loss(decoder(encoder(augment(b))), b),
        "idec_step": lambda b, i: sum(model.loss_terms(augment(b), i).values()),
    }.items():
        times = []
        for _ in range(steps + 2):
            index = torch.randint(len(x), (s["batch_size"],))
            start = time.perf_counter()
            loss = fn(xt[index], index)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            times.append(time.perf_counter() - start)
        out[f"{name}_seconds"] = float(np.median(times[2:]))
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(x), EVAL_BATCH_SIZE):
            model(xt[i : i + EVAL_BATCH_SIZE])
    out["dataset_pass_seconds"] = time.perf_counter() - start
    passes = s["cluster_steps"] // s["update_interval"] + 2
    out["full_schedule_hours_estimate"] = (
        s["pretrain_steps"] * out["pretrain_step_seconds"]
        + s["cluster_steps"] * out["idec_step_seconds"]
        + passes * out["dataset_pass_seconds"]
    ) / 3600
    out["epoch_seconds_pretrain"] = out["pretrain_step_seconds"] * len(x) / s["batch_size"]
    out.update(dataset=dataset, n=len(x), batch_size=s["batch_size"], full_schedule=s, timed_steps=steps)
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["run", "time"])
    parser.add_argument("--dataset", choices=["usps", "mnist"], default="usps")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--pretrain_steps", type=int, default=1850)
    parser.add_argument("--cluster_steps", type=int, default=1500)
    parser.add_argument(
        "--out", type=Path, default=None, help="result file (default: results/<dataset>_conv_idec_aug_reduced.json)"
    )
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    if args.mode == "time":
        result = time_steps(args.dataset)
        (RESULTS / f"{args.dataset}_conv_idec_aug_timing.json").write_text(json.dumps(result, indent=2) + "\n")
    else:
        start = time.perf_counter()
        result = run(args.dataset, args.seeds, args.pretrain_steps, args.cluster_steps)
        result["total_seconds"] = time.perf_counter() - start
        out = args.out or RESULTS / f"{args.dataset}_conv_idec_aug_reduced.json"
        out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
