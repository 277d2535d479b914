"""The command line builds any module of the DEC family (`--model`, ``model.class_path``) and sets
`CentroidReinit`'s modes from ``trainer.callbacks``; the cli package has no import circle."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

import dec_lightning.cli
from dec_lightning.callbacks import CentroidReinit
from dec_lightning.cli.main import main, run_cli
from dec_lightning.modules import DKM
from dec_lightning.modules.dec import load_checkpoint_file

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = REPO_ROOT / "configs"
CLI_DIR = Path(dec_lightning.cli.__file__).parent
# run_cli passes its own args while pytest's argv is set: Lightning's notice about that is expected here
pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter is intended")


def tiny(save_dir: Path) -> list[str]:
    """A config's schedule shrunk to seconds: a 64-32-10 encoder, 110 pretraining and 40 clustering steps (5 epochs)."""
    return [
        "--encoder.init_args.dims", "[64, 32, 10]", "--pretrain.layerwise_steps", "10",
        "--pretrain.finetune_steps", "100", "--trainer.max_steps", "40", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.logger.init_args.save_dir", str(save_dir),
    ]  # fmt: skip


def print_config(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["run", *args, "--print_config"])
    assert exit_info.value.code in (0, None)
    return capsys.readouterr().out


def model_section(printed: str) -> str:
    """The ``model:`` block of a printed config."""
    lines = printed.splitlines()
    start = lines.index("model:")
    end = next(i for i in range(start + 1, len(lines)) if lines[i] and not lines[i].startswith(" "))
    return "\n".join(lines[start:end])


# ----------------------------------------------------------------------------- no import circle


def cli_imports(path: Path) -> set[str]:
    """Modules of ``dec_lightning.cli`` that a file imports, at any depth of its code."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("dec_lightning.cli.")}


def test_only_main_imports_the_subcommands() -> None:
    """Shared pieces live in `dec_lightning.cli.common`: the subcommands import it and never each other."""
    files = {path.stem: path for path in CLI_DIR.glob("*.py")}
    assert {"common", "main", "predict", "select_k"} <= set(files)
    for stem in ("__init__", "common", "predict", "select_k"):
        imported = cli_imports(files[stem])
        assert "dec_lightning.cli.main" not in imported, stem
        assert not {f"dec_lightning.cli.{other}" for other in ("predict", "select_k")} & imported, stem
    assert cli_imports(files["common"]) == set()
    assert {"dec_lightning.cli.predict", "dec_lightning.cli.select_k"} <= cli_imports(files["main"])
    # the public names and the console script's entry point
    assert dec_lightning.cli.main.main is main and dec_lightning.cli.main.run_cli is run_cli
    assert dec_lightning.cli.DECLightningCLI.__module__ == "dec_lightning.cli.common"
    assert 'dec-lightning = "dec_lightning.cli.main:main"' in (REPO_ROOT / "pyproject.toml").read_text()


# ----------------------------------------------------------------------------- the model family


def test_plain_model_block_stays_dec(capsys: pytest.CaptureFixture[str]) -> None:
    """A config's ``model:`` block of DEC's keys, without class_path, builds DEC as before."""
    section = model_section(print_config(capsys, "--config", str(CONFIGS / "digits.yaml")))
    assert "class_path: dec_lightning.modules.DEC\n" in section + "\n"
    assert "n_clusters: 10" in section and "class_path: torch.optim.SGD" in section


def test_model_flag_selects_dkm(capsys: pytest.CaptureFixture[str]) -> None:
    """``--model dec_lightning.modules.DKM`` swaps the class; the config's model values that DKM also takes
    carry over (jsonargparse keeps them across a class_path change), DEC's defaults included."""
    printed = print_config(capsys, "--config", str(CONFIGS / "digits.yaml"), "--model", "dec_lightning.modules.DKM")
    section = model_section(printed)
    assert "class_path: dec_lightning.modules.DKM" in section
    assert "annealing: false" in section and "epochs_per_alpha: 5" in section  # DKM's own arguments
    assert "alpha: 1.0" in section and "reconstruction_weight: 0.0" in section  # carried over from DEC
    assert "dec_lightning.callbacks.TargetDistributionRefresh" in printed  # the config's callbacks as they are


def test_dkm_config_selects_dkm_with_its_settings(capsys: pytest.CaptureFixture[str]) -> None:
    section = model_section(print_config(capsys, "--config", str(CONFIGS / "digits_dkm.yaml")))
    assert "class_path: dec_lightning.modules.DKM" in section
    assert "alpha: 1000.0" in section and "reconstruction_weight: 1.0" in section
    assert "class_path: torch.optim.Adam" in section


def test_unknown_model_class_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """A class outside the family (not a `DEC` subclass) is an argument error, not a crash at fit."""
    with pytest.raises(SystemExit) as exit_info:
        run_cli(
            ["run", "--config", str(CONFIGS / "digits.yaml"), "--model", "dec_lightning.modules.AutoencoderPretraining"]
        )
    assert exit_info.value.code == 2
    assert "AutoencoderPretraining" in capsys.readouterr().err


@pytest.fixture(scope="module")
def dkm_run(tmp_path_factory: pytest.TempPathFactory):
    """One tiny ``run --config configs/digits_dkm.yaml``: pretraining, then DKM."""
    save_dir = tmp_path_factory.mktemp("dkm_run")
    return run_cli(["run", "--config", str(CONFIGS / "digits_dkm.yaml"), *tiny(save_dir)]), save_dir


def test_dkm_config_trains_dkm_end_to_end(dkm_run, capsys: pytest.CaptureFixture[str]) -> None:
    cli, save_dir = dkm_run
    model = cli.model
    assert type(model) is DKM
    assert model.hparams.alpha == 1000.0 and model.current_alpha == 1000.0
    assert model.decoder is not None  # reconstruction term, from the pretrained decoder
    assert isinstance(cli.trainer.optimizers[0], torch.optim.Adam)
    assert cli.trainer.global_step == 40
    assert model.refresh_count == 5  # DKM refreshes its labels once per epoch, without TargetDistributionRefresh
    # measured 0.61 on these settings (seed 0); 10 balanced classes: chance is ~0.1-0.2
    assert model.scores["acc"] > 0.5
    # the checkpoint records the class; it reloads alone with that class's loader
    (checkpoint,) = save_dir.glob("cluster/version_0/checkpoints/*.ckpt")
    assert load_checkpoint_file(checkpoint)["hyper_parameters"]["_class_path"] == "dec_lightning.modules.DKM"
    reloaded = DKM.load_from_checkpoint(checkpoint, map_location="cpu")
    assert torch.equal(reloaded.centers, model.centers) and reloaded.current_alpha == 1000.0


def test_predict_with_a_dkm_checkpoint(dkm_run, tmp_path: Path) -> None:
    cli, save_dir = dkm_run
    (checkpoint,) = save_dir.glob("cluster/version_0/checkpoints/*.ckpt")
    predicted = run_cli(
        ["predict", "--config", str(CONFIGS / "digits_dkm.yaml"), "--encoder.init_args.dims", "[64, 32, 10]",
         "--ckpt_path", str(checkpoint), "--output_dir", str(tmp_path)]
    )  # fmt: skip
    assert type(predicted.model) is DKM
    assert np.array_equal(predicted.predictions.labels, cli.model.labels.numpy())


def reinit_callback(cli) -> CentroidReinit:
    (callback,) = [c for c in cli.trainer.callbacks if isinstance(c, CentroidReinit)]
    return callback


@pytest.mark.parametrize(
    ("config", "mode", "extra", "reclusterings", "resets"),
    [
        ("digits.yaml", "reinit", [], 4, 0),  # at the start of epochs 1-4
        ("digits_dkm.yaml", "roy", [], 5, 0),  # at the end of epochs 0-4
        ("digits.yaml", "brb", ["--trainer.callbacks.interval", "2"], 2, 2),  # at the start of epochs 2 and 4
    ],
)
def test_centroid_reinit_mode_from_the_command_line(
    config: str, mode: str, extra: list[str], reclusterings: int, resets: int, tmp_path: Path
) -> None:
    args = ["--trainer.callbacks+=dec_lightning.callbacks.CentroidReinit", "--trainer.callbacks.mode", mode]
    cli = run_cli(
        ["run", "--config", str(CONFIGS / config), *tiny(tmp_path), *args, "--trainer.callbacks.n_init", "3", *extra]
    )
    callback = reinit_callback(cli)
    assert callback.mode == mode and callback.n_init == 3
    assert cli.trainer.current_epoch == 5
    assert (callback.reinit_count, callback.reset_count) == (reclusterings, resets)
    if mode == "brb":
        assert callback.last_reset_layers  # the encoder's hidden layers were soft-reset
    if mode == "roy":
        # the last epoch ended with k-means on the final embedding: each centre is the mean of its points
        model = cli.model.eval()
        with torch.no_grad():
            z = model.encoder(cli.datamodule.dataset.x)
            labels = torch.cdist(z, model.centers).argmin(dim=1)
            means = torch.stack([z[labels == k].mean(dim=0) for k in range(model.n_clusters)])
        assert torch.allclose(means, model.centers, atol=1e-3 * z.abs().max().item())
        assert model.centers.requires_grad  # frozen only for the fit


def test_centroid_reinit_bad_mode_names_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "run",
        "--config",
        str(CONFIGS / "digits.yaml"),
        "--trainer.callbacks+=dec_lightning.callbacks.CentroidReinit",
    ]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--trainer.callbacks.mode", "roi"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Expected a typing.Literal['reinit', 'roy', 'brb']. Got value: roi" in err
