"""Every shell command the docs show runs here, as a user would type it, with tiny overrides.

The commands are read from the fenced code blocks (bash, sh, console or no language) of
README.md and docs/*.md. Each must be a key of `COVERED`, which names the test below that
runs it, or of `NOT_RUN`, with the reason: a command added to the docs without either fails
`test_every_documented_command_is_covered`. The runs start ``dec-lightning`` in a fresh
process (``python -m dec_lightning``, the console script's entry point) in a scratch folder
laid out like the repository root (``configs/``, ``../shared/data``), so relative paths in
the docs resolve as they do for a user; ``…`` in a documented path is the file the earlier
commands wrote there. Only the schedule is shrunk (`TINY`), appended after the documented
arguments.
"""

from __future__ import annotations

import csv
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.metrics import adjusted_rand_score

import dec_lightning
from dec_lightning.modules import DEC

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
SUMMARY = re.compile(r"^digits: ACC=(\d\.\d{3}) NMI=\d\.\d{3} ARI=\d\.\d{3} time=\d+s$")
QUIET = ("--trainer.enable_progress_bar", "false")
# digits.yaml shrunk to seconds; the layer-wise phase stays in (it is what broke under DDP)
TINY = (
    "--encoder.init_args.dims", "[64, 32, 10]", "--pretrain.layerwise_steps", "30", "--pretrain.finetune_steps", "300",
    "--trainer.max_steps", "40", *QUIET,
)  # fmt: skip

COVERED = {
    "make demo": "test_make_targets_run_the_documented_commands",
    "dec-lightning run --config configs/digits.yaml": "test_digits_workflow",
    "dec-lightning pretrain --config configs/digits.yaml": "test_digits_workflow",
    "dec-lightning cluster --config configs/digits.yaml --model.pretrained "
    "runs/digits/pretrain/version_0/checkpoints/….ckpt": "test_digits_workflow",
    "dec-lightning cluster --config configs/digits.yaml --ckpt_path "
    "runs/digits/cluster/version_0/checkpoints/….ckpt": "test_digits_workflow",
    "dec-lightning predict --config configs/digits.yaml --ckpt_path … --output_dir predictions/": "test_digits_workflow",
    "dec-lightning predict --config configs/digits.yaml --ckpt_path runs/digits/cluster/version_0/checkpoints/….ckpt "
    "--output_dir predictions/": "test_digits_workflow",
    "dec-lightning predict --config configs/digits.yaml --ckpt_path runs/digits/cluster/version_0/checkpoints/….ckpt "
    "--output_dir predictions/ --data dec_lightning.data.ArrayDataModule --data.data new.csv": "test_digits_workflow",
    "tensorboard --logdir runs/digits": "test_digits_workflow",
    "dec-lightning run --config configs/digits.yaml --print_config": "test_print_config",
    "dec-lightning run --config configs/digits.yaml --trainer.precision bf16-mixed": "test_bf16_mixed_run",
    "dec-lightning run --config configs/digits.yaml --data dec_lightning.data.ArrayDataModule --data.data "
    "my_features.csv --data.label_column label --encoder.init_args.dims '[20, 500, 500, 2000, 10]' "
    "--model.n_clusters 5": "test_own_data",
    "dec-lightning run --config configs/mnist_fast.yaml --data.init_args.data_dir ../shared/data": "test_mnist_runs",
    "dec-lightning run --config configs/mnist_cpu_best.yaml --data.init_args.data_dir ../shared/data": "test_mnist_runs",
    "dec-lightning run --config configs/mnist.yaml --trainer.devices 4 --trainer.strategy ddp": "test_mnist_runs",
    "dec-lightning run --config configs/digits.yaml --config configs/trainer/ddp_cpu.yaml "
    "--data.init_args.batch_size 128": "test_ddp_cli_matches_one_process",
    "dec-lightning cluster --config cfg.yaml --data ArrayDataModule --data.data bad.csv": "test_troubleshooting_examples",
    "dec-lightning predict --config cfg.yaml --ckpt_path DEC.ckpt --output_dir out/": "test_troubleshooting_examples",
    "dec-lightning predict --config cfg.yaml --ckpt_path DEC.ckpt --output_dir out/ --data ArrayDataModule "
    "--data.data new.csv": "test_troubleshooting_examples",
    "dec-lightning select-k --config configs/digits.yaml --k 5:15": "test_select_k_command",
    "dec-lightning run --config configs/digits_dkm.yaml": "test_dec_family_commands",
    "dec-lightning run --config configs/digits.yaml --model dec_lightning.modules.DKM --print_config": (
        "test_dec_family_commands"
    ),
    "dec-lightning run --config configs/digits_dkm.yaml --trainer.callbacks+=dec_lightning.callbacks.CentroidReinit "
    "--trainer.callbacks.mode roy": "test_dec_family_commands",
}
NOT_RUN = {
    "make test": "this suite itself; CI runs it through .ci/run",
    "tensorboard --logdir runs/quickstart": "a TensorBoard server; the estimator's log_dir is read back in "
    "tests/test_tensorboard.py and notebook 03",
}


def documented_commands(path: Path) -> list[str]:
    """Shell commands in the fenced blocks of a Markdown file: continuations joined, prompts and comments dropped."""
    commands, language, pending = [], None, ""
    for line in path.read_text().splitlines():
        fence = re.match(r"^```(\w*)\s*$", line.strip())
        if fence:
            language = None if language is not None else fence.group(1)
            continue
        if language not in ("", "bash", "sh", "shell", "console"):
            continue
        text = f"{pending} {line.strip()}".strip() if pending else line.strip()
        pending = ""
        if text.endswith("\\"):
            pending = text[:-1].strip()
            continue
        text = re.split(r"\s+#\s", text.removeprefix("$ "), maxsplit=1)[0].strip()
        if text and text.split()[0] in ("dec-lightning", "make", "python", "tensorboard", "pip", "bash"):
            commands.append(text)
    return commands


ALL_COMMANDS = sorted({c for path in DOCS for c in documented_commands(path)})


def test_every_documented_command_is_covered() -> None:
    uncovered = [c for c in ALL_COMMANDS if c not in COVERED and c not in NOT_RUN]
    assert not uncovered, f"documented but not run by any test (add to COVERED or NOT_RUN): {uncovered}"
    assert not set(COVERED) & set(NOT_RUN)
    stale = [c for c in [*COVERED, *NOT_RUN] if c not in ALL_COMMANDS]
    assert not stale, f"no longer in the docs: {stale}"
    module = sys.modules[__name__]
    assert all(callable(getattr(module, name, None)) for name in COVERED.values())
    assert len(ALL_COMMANDS) >= 15  # the extraction works: README and docs hold this many


# ----------------------------------------------------------------------------- running them


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch repository root: ``configs/`` and ``../shared/data`` as in a checkout; the user's files."""
    root = tmp_path_factory.mktemp("docs")
    work = root / "repo"
    work.mkdir()
    (work / "configs").symlink_to(REPO_ROOT / "configs")
    data = Path(os.environ.get("DEC_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))
    if data.is_dir():
        (root / "shared").mkdir()
        (root / "shared" / "data").symlink_to(data)
    x = load_digits().data
    shutil.copy(REPO_ROOT / "configs" / "digits.yaml", work / "cfg.yaml")
    np.savetxt(work / "new.csv", x[:50] / 16.0, delimiter=",")
    bad = x[:20] / 16.0
    bad[[1, 3, 5], 2] = np.nan
    np.savetxt(work / "bad.csv", bad, delimiter=",")
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 3, (5, 20))
    labels = np.repeat(np.arange(5), 40)
    features = centers[labels] + rng.normal(0, 1, (200, 20))
    features = (features - features.mean(0)) / features.std(0)  # the README: scale features first
    with open(work / "my_features.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([f"f{i}" for i in range(20)] + ["label"])
        writer.writerows([*row, label] for row, label in zip(features.round(5), labels, strict=True))
    return work


def run_documented(command: str, cwd: Path, *extra: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run a documented command in ``cwd``; ``…`` in a path is the newest file matching it there."""
    args = shlex.split(command)
    if args[0] == "dec-lightning":
        args = [sys.executable, "-m", "dec_lightning", *args[1:]]
    for i, arg in enumerate(args):
        if "…" in arg:
            pattern = "runs/digits/cluster/version_*/checkpoints/*.ckpt" if arg == "…" else arg.replace("…", "*")
            found = sorted(cwd.glob(pattern), key=lambda p: p.stat().st_mtime)
            assert found, f"{command}: nothing matches {pattern} in {cwd}"
            args[i] = str(found[-1].relative_to(cwd))
    package_root = str(Path(dec_lightning.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": package_root, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run(
        [*args, *extra], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"{result.args}\n{result.stderr[-3000:]}"
    return result.stdout


def summary_acc(stdout: str) -> float:
    match = SUMMARY.match(stdout.strip().splitlines()[-1])
    assert match, stdout[-1000:]
    return float(match.group(1))


def newest(cwd: Path, pattern: str) -> Path:
    return max(cwd.glob(pattern), key=lambda p: p.stat().st_mtime)


def digits_labels(checkpoint: Path) -> np.ndarray:
    """The final model's hard assignment of every digit, from a DEC checkpoint."""
    model = DEC.load_from_checkpoint(checkpoint, map_location="cpu")
    model.eval()
    x = torch.from_numpy(load_digits().data / 16.0).float()
    with torch.no_grad():
        return model(x).argmax(dim=1).numpy()


def test_digits_workflow(workspace: Path) -> None:
    """The README's command-line section in order: run, pretrain, cluster, resume, predict, TensorBoard."""
    cwd = workspace
    assert summary_acc(ok(run_documented("dec-lightning run --config configs/digits.yaml", cwd, *TINY))) > 0.3
    pretrain = run_documented("dec-lightning pretrain --config configs/digits.yaml", cwd, *TINY)
    ok(pretrain)  # "prints the checkpoint path" (Lightning's info log, on stderr)
    assert "pretrained autoencoder: runs/digits/pretrain/version_1/checkpoints/" in pretrain.stderr
    cluster = (
        "dec-lightning cluster --config configs/digits.yaml --model.pretrained "
        "runs/digits/pretrain/version_0/checkpoints/….ckpt"
    )
    assert summary_acc(ok(run_documented(cluster, cwd, *TINY))) > 0.3
    resume = "dec-lightning cluster --config configs/digits.yaml --ckpt_path runs/digits/cluster/version_0/checkpoints/….ckpt"
    resumed = ok(run_documented(resume, cwd, *TINY, "--trainer.max_steps", "60"))
    assert summary_acc(resumed) > 0.3
    assert torch.load(newest(cwd, "runs/digits/cluster/version_2/checkpoints/*.ckpt"))["global_step"] == 60

    predict = "dec-lightning predict --config configs/digits.yaml --ckpt_path … --output_dir predictions/"
    ok(run_documented(predict, cwd, *TINY[:2]))  # the model is built from the config: the same encoder
    rows = (cwd / "predictions" / "assignments.csv").read_text().splitlines()
    assert rows[0] == "index,label,max_probability" and len(rows) == 1 + 1797
    q = np.load(cwd / "predictions" / "soft_assignments.npy")
    assert q.shape == (1797, 10) and np.allclose(q.sum(1), 1, atol=1e-5)
    for command in [
        c for c in COVERED if c.startswith("dec-lightning predict --config configs/digits.yaml --ckpt_path r")
    ]:
        ok(run_documented(command, cwd, *TINY[:2]))
        n = 50 if "new.csv" in command else 1797
        assert len((cwd / "predictions" / "assignments.csv").read_text().splitlines()) == 1 + n

    # `tensorboard --logdir runs/digits` finds both stages' event files there
    for stage in ("pretrain", "cluster"):
        assert list((cwd / "runs" / "digits" / stage).glob("version_*/events.out.tfevents.*")), stage


def test_print_config(workspace: Path) -> None:
    out = ok(run_documented("dec-lightning run --config configs/digits.yaml --print_config", workspace))
    assert "class_path: dec_lightning.encoders.MLPEncoder" in out and "layerwise_steps: 600" in out


def test_bf16_mixed_run(workspace: Path) -> None:
    """Both stages train under bf16 autocast (Lightning announces it once per trainer) and still cluster."""
    command = "dec-lightning run --config configs/digits.yaml --trainer.precision bf16-mixed"
    result = run_documented(command, workspace, *TINY, "--trainer.logger.init_args.save_dir", "runs/bf16")
    assert summary_acc(ok(result)) > 0.3
    assert result.stderr.count("Using bfloat16 Automatic Mixed Precision") == 2, result.stderr[-2000:]


def test_own_data(workspace: Path) -> None:
    command = next(c for c in COVERED if "my_features.csv" in c)
    tiny = ("--encoder.init_args.dims", "[20, 32, 10]", *TINY[2:], "--trainer.logger.init_args.save_dir", "runs/own")
    out = ok(run_documented(command, workspace, *tiny))
    assert out.strip().splitlines()[-1].startswith("arrays: ACC=")  # labels from the CSV's label column
    assert float(out.strip().splitlines()[-1].split("ACC=")[1].split()[0]) > 0.6  # 5 separated blobs


def test_troubleshooting_examples(workspace: Path) -> None:
    """docs/troubleshooting.md: the NaN error is the line shown there; predict with a config and a checkpoint."""
    bad = run_documented(
        "dec-lightning cluster --config cfg.yaml --data ArrayDataModule --data.data bad.csv", workspace
    )
    assert bad.returncode == 1
    documented = "bad.csv: 3 feature values are NaN, infinite or beyond float32's range"
    errors = [line for line in bad.stderr.splitlines() if "error" in line.lower() or "Traceback" in line]
    assert errors == [f"dec-lightning: error: {documented} (|x| > 3.4e+38); impute, drop or rescale them first"]
    assert documented in (REPO_ROOT / "docs" / "troubleshooting.md").read_text()
    assert not (workspace / "runs" / "digits" / "cluster" / "version_3").exists()  # refused: nothing written

    checkpoint = next((workspace / "runs" / "digits" / "cluster").glob("version_0/checkpoints/*.ckpt"), None)
    if checkpoint is None:  # run alone: make one
        ok(run_documented("dec-lightning run --config cfg.yaml", workspace, *TINY))
        checkpoint = newest(workspace, "runs/digits/cluster/version_*/checkpoints/*.ckpt")
    shutil.copy(checkpoint, workspace / "DEC.ckpt")
    for command in [c for c in COVERED if c.startswith("dec-lightning predict --config cfg.yaml")]:
        ok(run_documented(command, workspace, *TINY[:2]))
        n = 50 if "new.csv" in command else 1797
        assert len((workspace / "out" / "assignments.csv").read_text().splitlines()) == 1 + n


def test_make_targets_run_the_documented_commands(workspace: Path) -> None:
    """``make demo`` runs `dec-lightning run --config configs/digits.yaml` (run tiny in `test_digits_workflow`)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}  # under `make test`
    dry = subprocess.run(
        ["make", "--no-print-directory", "-n", "demo"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (line,) = [line for line in dry.splitlines() if "dec-lightning" in line]  # after any install steps
    assert re.fullmatch(
        r"\S*/dec-lightning run --config configs/digits\.yaml --trainer\.enable_progress_bar false", line
    ), line


def test_ddp_cli_matches_one_process(workspace: Path) -> None:
    """The README's multi-GPU command with 2 CPU processes, layer-wise phase included, runs to its summary
    line and clusters like the same command in one process (ARI >= 0.99)."""
    ddp = (
        "dec-lightning run --config configs/digits.yaml --config configs/trainer/ddp_cpu.yaml "
        "--data.init_args.batch_size 128"
    )
    two = run_documented(ddp, workspace, *TINY, "--trainer.logger.init_args.save_dir", "runs/ddp2", timeout=600)
    acc = summary_acc(ok(two))
    assert two.stdout.count("digits: ACC=") == 1  # printed by rank 0 only
    one = run_documented(
        "dec-lightning run --config configs/digits.yaml",
        workspace,
        *TINY,
        "--trainer.logger.init_args.save_dir",
        "runs/one",
    )
    assert summary_acc(ok(one)) == pytest.approx(acc, abs=0.01)
    labels = [
        digits_labels(newest(workspace, f"runs/{d}/cluster/version_*/checkpoints/*.ckpt")) for d in ("ddp2", "one")
    ]
    assert adjusted_rand_score(*labels) >= 0.99


def test_select_k_command(workspace: Path) -> None:
    """The README's select-k command: one CSV row per K of 5:15, one of them the pick printed last."""
    result = run_documented("dec-lightning select-k --config configs/digits.yaml --k 5:15", workspace, *TINY)
    last = ok(result).strip().splitlines()[-1]
    match = re.match(r"^recommended K=(\d+) \(rule: the K just before the sharpest drop of generalizability", last)
    assert match, last
    with open(newest(workspace, "runs/digits/select_k/version_*/select_k.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["k"]) for r in rows] == list(range(5, 16))
    assert [int(r["k"]) for r in rows if r["recommended"] == "1"] == [int(match.group(1))]
    assert all(float(r["generalizability"]) > 0 and 0 < float(r["acc"]) <= 1 for r in rows)


def test_mnist_runs(workspace: Path) -> None:
    """The MNIST commands of the README: the fast and the best CPU config on one process, the paper config under
    DDP (2 CPU processes here instead of 4 GPUs), all shrunk to a few steps of a small encoder."""
    if not (workspace.parent / "shared" / "data" / "MNIST").is_dir():
        pytest.skip("MNIST not found: set DEC_DATA_DIR to the shared data folder")
    tiny = (
        "--encoder.init_args.dims", "[784, 32, 10]", "--pretrain.layerwise_steps", "3", "--pretrain.finetune_steps",
        "5", "--trainer.max_steps", "5", *QUIET,
    )  # fmt: skip
    for name in ("mnist_fast", "mnist_cpu_best"):
        one = run_documented(next(c for c in COVERED if f"configs/{name}.yaml" in c), workspace, *tiny)
        assert re.match(r"^mnist: ACC=\d\.\d{3}", ok(one).strip().splitlines()[-1])
    paper = next(c for c in COVERED if "configs/mnist.yaml" in c)
    cpu = ("--trainer.accelerator", "cpu", "--trainer.devices", "2", "--data.init_args.data_dir", "../shared/data")
    ddp = run_documented(paper, workspace, *tiny, *cpu, timeout=600)
    assert re.match(r"^mnist: ACC=\d\.\d{3}", ok(ddp).strip().splitlines()[-1])


def test_dec_family_commands(workspace: Path) -> None:
    """docs/reclustering.md's command line: DKM from its config, ``--model``, and Roy's mode in trainer.callbacks."""
    dkm = ok(run_documented("dec-lightning run --config configs/digits_dkm.yaml", workspace, *TINY))
    assert re.search(r"^DKM checkpoint: runs/digits_dkm/cluster/version_\d+/checkpoints/", dkm, re.MULTILINE), dkm
    assert summary_acc(dkm) > 0.5  # measured 0.650 on TINY (seed 0); 10 balanced classes: chance is ~0.1-0.2

    command = "dec-lightning run --config configs/digits.yaml --model dec_lightning.modules.DKM --print_config"
    printed = ok(run_documented(command, workspace))
    assert "model:\n  class_path: dec_lightning.modules.DKM\n" in printed
    assert "class_path: dec_lightning.callbacks.TargetDistributionRefresh" in printed  # the config's callbacks

    roy = next(c for c in COVERED if "--trainer.callbacks.mode roy" in c)
    out = ok(run_documented(roy, workspace, *TINY, "--trainer.logger.init_args.save_dir", "runs/roy"))
    assert summary_acc(out) > 0.3
    checkpoint = torch.load(newest(workspace, "runs/roy/cluster/version_*/checkpoints/*.ckpt"), weights_only=True)
    assert checkpoint["hyper_parameters"]["_class_path"] == "dec_lightning.modules.DKM"
    assert checkpoint["callbacks"]["CentroidReinit"]["reinit_count"] == 5  # k-means at the end of each of 5 epochs
