"""Ablation of re-clustering during training (issue #15): DEC, DEC + re-cluster, DEC + BRB, DKM, DKM + Roy.

For each dataset and seed the autoencoder is pretrained once; every arm then clusters from
copies of the same pretrained weights for the same number of steps (no tolerance stopping),
so the arms differ only in the objective and the re-clustering callback:

- ``dec``: DEC, KL(P||Q), P refreshed every ``update_interval`` steps;
- ``dec_recluster``: the same + k-means re-initialisation of the centres at every epoch
  (`CentroidReinit(mode="reinit")`);
- ``dec_brb``: the same + BRB every ``brb_interval`` epochs: soft reset (a = 0.8) of the encoder
  but its embedding layer, re-clustering, centres' optimizer state cleared (`mode="brb"`);
- ``dkm``: Deep k-Means, alpha 1000 (the reference's pretrained variant), lambda 1;
- ``dkm_roy``: the same with centres frozen within each epoch and replaced by k-means on the
  whole embedding at its end (Roy 2024, `mode="roy"`).

Every arm trains with Adam lr 1e-3: BRB's setting for DEC and IDEC (reference
``config/autoencoder/baseline_comp.py``, ``dc_optimizer``) and DKM's (``compgraph.py`` L89).
With DEC's own SGD 0.01 / momentum 0.9 the encoder barely recovers from a soft reset in a short
run (digits, seed 0: DEC + BRB 0.440 with SGD against 0.721 with Adam; DEC 0.791 and 0.799).

One process per dataset and seed, each merging its rows into the results file as it finishes:

    OMP_NUM_THREADS=1 python benchmarks/reclustering.py --datasets digits --seeds 0 1 2
    OMP_NUM_THREADS=1 python benchmarks/reclustering.py --datasets mnist --seeds 0

Writes benchmarks/results/reclustering.{json,md}.
"""

from __future__ import annotations

import argparse
import fcntl
import functools
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lightning as L
import numpy as np
import torch

from benchmarks._common import cluster, cpu_model, mean_std, pretrain, quiet
from benchmarks._common import load_arrays as load
from dec_lightning.callbacks import CentroidReinit
from dec_lightning.encoders import MLPEncoder
from dec_lightning.modules import DEC, DKM

RESULTS = Path(__file__).resolve().parent / "results"
JSON, PAGE = RESULTS / "reclustering.json", RESULTS / "reclustering.md"

# Small, fast schedules: 2 shared CPU cores. The MLP is narrower than DEC's d-500-500-2000-10.
# cluster_steps are whole epochs (digits 8, USPS 37, MNIST 274, Reuters 28 steps of 256); BRB's
# interval T is a fifth of the clustering epochs (its default T = 20 assumes hundreds of epochs),
# so every BRB arm resets 4 times.
SCHEDULES = {
    "digits": {"hidden": [256, 256, 1024, 10], "batch_size": 256, "pretrain_steps": 600, "cluster_steps": 400,
               "update_interval": 16, "brb_interval": 10},
    "usps": {"hidden": [256, 256, 1024, 10], "batch_size": 256, "pretrain_steps": 1110, "cluster_steps": 1110,
             "update_interval": 37, "brb_interval": 6},
    "mnist": {"hidden": [256, 256, 1024, 10], "batch_size": 256, "pretrain_steps": 2740, "cluster_steps": 2740,
              "update_interval": 137, "brb_interval": 2},
    "reuters": {"hidden": [256, 256, 1024, 10], "batch_size": 256, "pretrain_steps": 1400, "cluster_steps": 1120,
                "update_interval": 28, "brb_interval": 8},
}  # fmt: skip
ADAM = functools.partial(torch.optim.Adam, lr=1e-3)
REINIT_N_INIT = 10  # k-means restarts per re-clustering (the first k-means uses 20, as in the paper)
BRB_RESET_FACTOR = 0.8  # BRB's default a for feed-forward autoencoders


def arms(schedule: dict) -> dict[str, tuple[type[DEC], Callable[[], list[L.Callback]]]]:
    """Each arm: the clustering module and a factory of its extra callbacks (fresh per run)."""
    return {
        "dec": (DEC, list),
        "dec_recluster": (DEC, lambda: [CentroidReinit(n_init=REINIT_N_INIT, mode="reinit")]),
        "dec_brb": (
            DEC,
            lambda: [
                CentroidReinit(
                    n_init=REINIT_N_INIT, mode="brb", interval=schedule["brb_interval"], reset_factor=BRB_RESET_FACTOR
                )
            ],
        ),
        "dkm": (DKM, list),
        "dkm_roy": (DKM, lambda: [CentroidReinit(n_init=REINIT_N_INIT, mode="roy")]),
    }


def run(name: str, seeds: list[int]) -> list[dict]:
    quiet()
    s = SCHEDULES[name]
    x, y = load(name)
    rows = []
    for seed in seeds:
        encoder = MLPEncoder([x.shape[1], *s["hidden"]])
        ae, pretrain_seconds = pretrain(
            x, y, seed, encoder, None, s["batch_size"], finetune_steps=s["pretrain_steps"],
            optimizer=lambda p: torch.optim.Adam(p, lr=1e-3),
        )  # fmt: skip
        for arm, (module, callbacks) in arms(s).items():
            result = cluster(
                x, y, seed, ae, s["batch_size"], s["cluster_steps"], s["update_interval"],
                extra_callbacks=callbacks, n_clusters=int(y.max()) + 1, module=module, optimizer=ADAM,
            )  # fmt: skip
            row = {"dataset": name, "seed": seed, "arm": arm, "pretrain_seconds": pretrain_seconds, **result}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def groups(result: dict) -> Iterator[tuple[str, str, list[dict]]]:
    """(dataset, arm, rows sorted by seed) for every arm that has rows, in the schedules' order."""
    for name, schedule in SCHEDULES.items():
        for arm in arms(schedule):
            rows = sorted(
                (r for r in result["rows"] if (r["dataset"], r["arm"]) == (name, arm)), key=lambda r: r["seed"]
            )
            if rows:
                yield name, arm, rows


def table(result: dict) -> str:
    lines = [
        "| dataset | arm | ACC | NMI | ARI | cluster time (s) | seeds |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, arm, rows in groups(result):
        acc, nmi, ari, sec = ([r[k] for r in rows] for k in ("acc", "nmi", "ari", "seconds"))
        seeds = ", ".join(str(r["seed"]) for r in rows)
        lines.append(
            f"| {name} | {arm} | {mean_std(acc)} | {mean_std(nmi)} | {mean_std(ari)} | {np.mean(sec):.1f} | {seeds} |"
        )
    return "\n".join(lines)


def summary(result: dict) -> dict:
    """Per dataset and arm: acc_mean, acc_std, nmi_mean, nmi_std, seeds (population std over seeds)."""
    out: dict = {}
    for name, arm, rows in groups(result):
        acc, nmi = [r["acc"] for r in rows], [r["nmi"] for r in rows]
        out.setdefault(name, {})[arm] = {
            "acc_mean": float(np.mean(acc)), "acc_std": float(np.std(acc)),
            "nmi_mean": float(np.mean(nmi)), "nmi_std": float(np.std(nmi)),
            "seeds": [r["seed"] for r in rows],
        }  # fmt: skip
    return out


def page(result: dict) -> str:
    runs = "\n".join(f"    {c}" for c in result["commands"])
    return f"""# Re-clustering during training: DEC, DEC + re-cluster, DEC + BRB, DKM, DKM + Roy

{runs}

Raw rows: `reclustering.json` (ACC, NMI, ARI and wall times per dataset, seed and arm; `summary`
holds the per-arm means). Verdict in plain words:
[docs/results.md](../../docs/results.md#re-clustering-during-training).

{table(result)}

mean ± std (population std) over the seeds listed.

## What was run

- **Datasets:** sklearn digits (1797 x 64, bundled), USPS (9298 x 256, train + test, pixels / 255),
  MNIST (70000 x 784, train + test, pixels / 255) and the 4-class Reuters-21578 tf-idf
  (7044 x 2000, scaled by sqrt(2000) as `ReutersDataModule` does).
- **Autoencoder:** MLP d-256-256-1024-10 (narrower than DEC's d-500-500-2000-10, for time),
  end-to-end pretraining only, Adam lr 1e-3, batch 256, once per dataset and seed; every arm
  clusters from a copy of it. Pretraining steps and clustering steps per dataset are in
  `schedules` of the JSON ({", ".join(f"{d}: {s['pretrain_steps']} / {s['cluster_steps']}" for d, s in result["schedules"].items())}).
- **Same budget per arm:** the same clustering steps (whole epochs), batch 256, no tolerance
  stopping; k-means with 20 restarts for the first centres, 10 for every re-clustering.
- **Optimizer:** Adam lr 1e-3 in every arm, BRB's setting for DEC (and DKM's). With DEC's own
  SGD 0.01 / momentum 0.9, the encoder barely recovered from BRB's soft resets in these short
  runs (digits, seed 0: DEC + BRB 0.440 with SGD, 0.721 with Adam; DEC 0.791 and 0.799).
- **Arms:** `dec` (KL(P||Q), P refreshed every `update_interval` steps: two epochs on digits,
  one on USPS and Reuters, half an epoch on MNIST); `dec_recluster` (+ k-means on the
  whole embedding at every epoch start, matched to the current labels); `dec_brb` (+ BRB: soft
  reset a = {BRB_RESET_FACTOR}, re-clustering, centres' optimizer state cleared, every T epochs with
  T = a fifth of the clustering epochs, so 4 resets: BRB's default T = 20 is for runs of hundreds
  of epochs); `dkm` (Deep k-Means loss, reconstruction + 1 · softmax k-means term, alpha = 1000
  constant: the reference's variant for a pretrained autoencoder); `dkm_roy` (DKM with
  the centres frozen in each epoch and replaced by k-means on the whole embedding at its end).
- **Machine:** {result["machine"]}; load averages at the start of each process:
  {", ".join(result["load"])}.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["digits"], choices=sorted(SCHEDULES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args()
    load_avg = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    command = "OMP_NUM_THREADS=1 python benchmarks/reclustering.py " + " ".join(sys.argv[1:])
    rows = []
    for name in args.datasets:
        rows += run(name, args.seeds)
    RESULTS.mkdir(exist_ok=True)
    lock_path = Path(tempfile.gettempdir()) / "dec_lightning_reclustering.lock"
    with open(lock_path, "w") as lock:  # processes run side by side: merge under a lock
        fcntl.flock(lock, fcntl.LOCK_EX)
        old = json.loads(JSON.read_text()) if JSON.is_file() else {"rows": [], "commands": [], "load": []}
        done = {(r["dataset"], r["seed"]) for r in rows}
        result = {
            "schedules": SCHEDULES,
            "reinit_n_init": REINIT_N_INIT,
            "brb_reset_factor": BRB_RESET_FACTOR,
            "machine": f"{cpu_model()}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} thread per process, 2 shared cores",
            "commands": [*old["commands"], command],
            "load": [*old["load"], load_avg],
            "rows": [r for r in old["rows"] if (r["dataset"], r["seed"]) not in done] + rows,
        }
        result["summary"] = summary(result)
        JSON.write_text(json.dumps(result, indent=2) + "\n")
        PAGE.write_text(page(result))
    print(table(result))


if __name__ == "__main__":
    main()
