"""End to end on digits: the CLI (in-process and as a console command), checkpoints, pretrain -> cluster."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

import dec_lightning
from dec_lightning.callbacks import KMeansInit, TargetDistributionRefresh
from dec_lightning.cli.main import run_cli
from dec_lightning.encoders import MLPEncoder
from dec_lightning.modules import DEC

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(REPO_ROOT / "configs" / "digits.yaml")
QUICK_REFRESH = str(REPO_ROOT / "tests" / "configs" / "digits_quick_refresh.yaml")
DIMS = [64, 64, 10]
# run_cli passes its own args while pytest's argv is set: Lightning's notice about that is expected here
pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter is intended")

SUMMARY = re.compile(r"^digits: ACC=\d\.\d{3} NMI=\d\.\d{3} ARI=\d\.\d{3} time=\d+s$")


def cli_args(command: str, save_dir: Path, *extra: str, pretrain_steps: int = 150, steps: int = 100) -> list[str]:
    """The digits config shrunk to seconds: a 64-64-10 encoder, short pretraining and clustering."""
    return [
        command,
        "--config",
        CONFIG,
        "--config",
        QUICK_REFRESH,
        "--encoder.init_args.dims",
        str(DIMS),
        "--pretrain.finetune_steps",
        str(pretrain_steps),
        "--trainer.max_steps",
        str(steps),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.logger.init_args.save_dir",
        str(save_dir),
        *extra,
    ]


def dataset_labels(module: DEC, x: torch.Tensor) -> torch.Tensor:
    module.eval()
    with torch.no_grad():
        return module(x).argmax(dim=1)


def only_checkpoint(folder: Path) -> Path:
    found = sorted(folder.glob("**/checkpoints/*.ckpt"))
    assert len(found) == 1, found
    return found[0]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """One in-process ``run`` (pretrain, then cluster), shared by the tests below."""
    save_dir = tmp_path_factory.mktemp("cli_run")
    cli = run_cli(cli_args("run", save_dir))
    return cli, save_dir


def test_cli_run_clusters_digits_well_above_chance(cli_run) -> None:
    cli, _ = cli_run
    scores = cli.model.scores
    assert set(scores) == {"acc", "nmi", "ari"}
    assert scores["acc"] > 0.5  # 10 balanced classes: chance is ~0.1-0.2
    assert scores["nmi"] > 0.4
    assert scores["ari"] > 0.25
    assert cli.trainer.global_step == 100
    assert cli.model.encoder.dims == DIMS
    assert cli.model.labels.shape == (1797,)


def test_cli_checkpoint_reloads_with_encoder(cli_run) -> None:
    """The DEC checkpoint holds the final model and the clustering state; given an encoder it reloads exactly."""
    cli, save_dir = cli_run
    path = only_checkpoint(save_dir / "cluster")
    assert torch.load(path, weights_only=False)["global_step"] == cli.trainer.global_step
    model = DEC.load_from_checkpoint(path, encoder=MLPEncoder(DIMS))
    x = cli.datamodule.dataset.x
    assert torch.equal(dataset_labels(model, x), cli.model.labels)
    assert model.refresh_count == cli.model.refresh_count > 1
    assert model.target.shape == (1797, 10)


def test_cli_checkpoint_reloads_without_args(cli_run) -> None:
    cli, save_dir = cli_run
    model = DEC.load_from_checkpoint(only_checkpoint(save_dir / "cluster"))
    assert torch.equal(dataset_labels(model, cli.datamodule.dataset.x), cli.model.labels)


def test_cli_hparams_yaml_has_no_pickled_modules(cli_run) -> None:
    _, save_dir = cli_run
    for hparams in save_dir.glob("**/hparams.yaml"):
        assert "!!python/object" not in hparams.read_text(), hparams


@pytest.fixture
def python_checkpoint(blobs_datamodule, trainer_kwargs, tmp_path) -> tuple[DEC, Path]:
    """A DEC built in Python (default optimizer), trained a few steps, saved by its trainer."""
    L.seed_everything(0, verbose=False)
    module = DEC(MLPEncoder([16, 16, 4]), n_clusters=4)
    callbacks = [KMeansInit(init="kmeans", n_init=2, seed=0), TargetDistributionRefresh(5)]
    trainer = L.Trainer(max_steps=12, callbacks=callbacks, **trainer_kwargs)
    trainer.fit(module, datamodule=blobs_datamodule)
    path = tmp_path / "dec.ckpt"
    trainer.save_checkpoint(path)
    return module, path


def test_python_checkpoint_reloads_with_encoder(python_checkpoint, blobs_datamodule, trainer_kwargs) -> None:
    module, path = python_checkpoint
    model = DEC.load_from_checkpoint(path, encoder=MLPEncoder([16, 16, 4]))
    assert model.n_clusters == 4 and model.hparams.alpha == 1.0
    torch.testing.assert_close(model.centers, module.centers)
    x = blobs_datamodule.dataset.x
    assert torch.equal(dataset_labels(model, x), dataset_labels(module, x))
    assert torch.equal(model.labels, module.labels)
    assert torch.equal(model.target, module.target)
    assert model.refresh_count == module.refresh_count == 3
    # through Trainer.predict as well: index order, same labels
    predictions = L.Trainer(**trainer_kwargs).predict(model, datamodule=blobs_datamodule)
    index = torch.cat([p["index"] for p in predictions])
    labels = torch.cat([p["labels"] for p in predictions])
    assert torch.equal(index, torch.arange(len(x)))
    assert torch.equal(labels, dataset_labels(module, x))


def test_python_checkpoint_loads_with_torch_default(python_checkpoint) -> None:
    module, path = python_checkpoint
    model = DEC.load_from_checkpoint(path, encoder=MLPEncoder([16, 16, 4]))
    torch.testing.assert_close(model.centers, module.centers)


def pretrained_encoder_state(ckpt: Path) -> dict[str, torch.Tensor]:
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    return {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}


@pytest.fixture(scope="module")
def pretrain_checkpoint(tmp_path_factory) -> Path:
    """``dec-lightning pretrain``: its autoencoder checkpoint."""
    save_dir = tmp_path_factory.mktemp("pretrain")
    cli = run_cli(cli_args("pretrain", save_dir, pretrain_steps=100))
    assert not cli.model.scores  # pretrain alone does not cluster
    return only_checkpoint(save_dir / "pretrain")


def cluster_from(pretrained: Path, save_dir: Path):
    """``dec-lightning cluster --model.pretrained ...`` with lr 0, so the encoder stays as loaded."""
    frozen = ("--model.pretrained", str(pretrained), "--model.optimizer.init_args.lr", "0.0")
    return run_cli(cli_args("cluster", save_dir, *frozen, steps=5))


def assert_encoder_equals(encoder: torch.nn.Module, expected: dict[str, torch.Tensor]) -> None:
    loaded = encoder.state_dict()
    assert set(loaded) == set(expected) == {"layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"}
    for name, value in expected.items():
        assert torch.equal(loaded[name], value), name


def test_cluster_loads_pretrained_encoder_state_file(pretrain_checkpoint, tmp_path) -> None:
    """Two steps through a plain encoder state file: the cluster stage starts from the pretrained weights."""
    pretrained = pretrained_encoder_state(pretrain_checkpoint)
    state_file = tmp_path / "encoder.pt"
    torch.save(pretrained, state_file)
    cli = cluster_from(state_file, tmp_path / "clu")
    assert_encoder_equals(cli.model.encoder, pretrained)
    # the seeded fresh encoder differs from the pretrained one, so the check above is not vacuous
    L.seed_everything(0, verbose=False)
    assert not torch.equal(MLPEncoder(DIMS).layers[0].weight, pretrained["layers.0.weight"])
    # k-means on the pretrained embedding already separates digits well
    assert cli.model.scores["acc"] > 0.5


def test_pretrain_then_cluster_from_checkpoint(pretrain_checkpoint, tmp_path) -> None:
    cli = cluster_from(pretrain_checkpoint, tmp_path / "clu")
    assert_encoder_equals(cli.model.encoder, pretrained_encoder_state(pretrain_checkpoint))
    assert cli.model.scores["acc"] > 0.5


def test_cluster_resumes_from_dec_checkpoint(cli_run, tmp_path) -> None:
    """``cluster --ckpt_path``: training continues from the checkpoint's step and clustering state."""
    _, save_dir = cli_run
    checkpoint = only_checkpoint(save_dir / "cluster")
    saved = torch.load(checkpoint, weights_only=True)
    steps = saved["global_step"] + 45  # at least one more refresh of P (every 30 steps)
    resumed = run_cli(cli_args("cluster", tmp_path, "--ckpt_path", str(checkpoint), steps=steps))
    assert saved["global_step"] < resumed.trainer.global_step <= steps
    assert resumed.model.refresh_count > saved["dec_state"]["refresh_count"]
    assert resumed.model.scores["acc"] > 0.5


def _console(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``dec-lightning ARGS`` as a user runs it, with tests/ importable for `cli_probes`."""
    package_root = str(Path(dec_lightning.__file__).resolve().parents[1])
    path = os.pathsep.join([package_root, str(REPO_ROOT / "tests")])
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "dec_lightning", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_cli_resume_after_sigkill_is_exact(pretrain_checkpoint, tmp_path) -> None:
    """``cluster`` killed with SIGKILL mid-epoch, resumed with ``--ckpt_path`` from its last epoch-end
    checkpoint after the pretrained file was moved away: the same weights, P and labels as the run
    that was never interrupted, through the console command and ``max_steps`` as in the configs."""
    pretrained = tmp_path / "pretrained.ckpt"
    pretrained.write_bytes(pretrain_checkpoint.read_bytes())

    def run(name: str, *extra: str) -> subprocess.CompletedProcess:
        args = cli_args("cluster", tmp_path / name, "--model.pretrained", str(pretrained), *extra, steps=90)
        return _console(*args, cwd=tmp_path)

    reference = run("reference")
    assert reference.returncode == 0, reference.stderr[-2000:]
    killed = run("killed", "--trainer.callbacks+=cli_probes.KillAtStep", "--trainer.callbacks.step", "43")
    assert killed.returncode == -signal.SIGKILL
    checkpoint = only_checkpoint(tmp_path / "killed")
    assert checkpoint.name == "epoch=4-step=40.ckpt"  # 8 steps per epoch: the last epoch end before step 43
    pretrained.rename(tmp_path / "moved.ckpt")  # a resumed run needs only its checkpoint (issue 13.5)
    resumed = run("killed", "--ckpt_path", str(checkpoint))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    summary = [p.stdout.strip().splitlines()[-1].split(" time=")[0] for p in (reference, resumed)]
    assert summary[0] == summary[1] and summary[0].startswith("digits: ACC=")
    final = {
        name: torch.load(only_checkpoint(tmp_path / name / "cluster" / f"version_{v}"), weights_only=True)
        for name, v in (("reference", 0), ("killed", 1))
    }
    a, b = final["reference"], final["killed"]
    assert a["global_step"] == b["global_step"] == 90
    assert a["dec_state"]["refresh_count"] == b["dec_state"]["refresh_count"] == 3
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    assert torch.equal(a["dec_state"]["target"], b["dec_state"]["target"])
    assert torch.equal(a["dec_state"]["labels"], b["dec_state"]["labels"])


def test_ckpt_path_only_resumes_cluster(cli_run, tmp_path) -> None:
    _, save_dir = cli_run
    with pytest.raises(SystemExit, match="resumes clustering"):
        run_cli(cli_args("run", tmp_path, "--ckpt_path", str(only_checkpoint(save_dir / "cluster"))))


def test_cluster_without_pretrained_encoder_fails(tmp_path) -> None:
    with pytest.raises(SystemExit, match="needs a pretrained encoder"):
        run_cli(cli_args("cluster", tmp_path))


def test_cli_usage_on_unknown_command(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["fit", "--config", CONFIG])
    assert exit_info.value.code == 2
    assert "usage: dec-lightning {pretrain,cluster,run,predict,select-k}" in capsys.readouterr().err


@pytest.fixture(scope="module")
def console_run(tmp_path_factory) -> subprocess.CompletedProcess:
    """``python -m dec_lightning run`` in a fresh process, with tiny settings."""
    save_dir = tmp_path_factory.mktemp("console")
    # the same package the in-process tests imported (the worktree's, or the installed one)
    package_root = str(Path(dec_lightning.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": package_root, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    args = cli_args("run", save_dir, "--encoder.init_args.dims", "[64, 32, 10]", pretrain_steps=60, steps=30)
    return subprocess.run(
        [sys.executable, "-m", "dec_lightning", *args],
        check=False,
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_console_run_prints_summary_last(console_run) -> None:
    assert console_run.returncode == 0, console_run.stderr[-3000:]
    lines = console_run.stdout.strip().splitlines()
    assert lines, console_run.stderr[-3000:]
    assert SUMMARY.match(lines[-1]), lines[-5:]
    assert any(line.startswith("DEC checkpoint: ") and line.endswith(".ckpt") for line in lines)


def test_console_run_has_no_spurious_args_warning(console_run) -> None:
    assert console_run.returncode == 0
    assert "args parameter is intended" not in console_run.stderr
