"""The results tables (docs/results.md, the README's recipes) are generated from the committed result files."""

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RESULT_DIRS = (REPO / "benchmarks" / "results", REPO / "benchmarks" / "studies" / "results")


def load_generator():
    spec = importlib.util.spec_from_file_location("results_table", REPO / "benchmarks" / "results_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def quality_files(directory: Path) -> list[Path]:
    """Result files written by benchmarks/quality.py (one measured run each)."""
    return [p for p in sorted(directory.glob("*.json")) if {"acc_mean", "runs"} <= set(json.loads(p.read_text()))]


def test_pages_match_result_files() -> None:
    generator = load_generator()
    readme = (REPO / "README.md").read_text()
    assert generator.readme_with_table(readme) == readme, "run: python benchmarks/results_table.py --write"
    page = (REPO / "docs" / "results.md").read_text()
    assert generator.results_page_with_table(page) == page, "run: python benchmarks/results_table.py --write"


def test_table_reads_numbers_and_start_from_json(tmp_path, monkeypatch) -> None:
    generator = load_generator()
    result = {"config": "c.yaml", "acc_mean": 0.8766, "acc_std": 0.01, "nmi_mean": 0.5, "ari_mean": 0.4,
              "baseline_acc_mean": 0.7, "target_acc": 0.82, "seeds": [0, 1], "wall_s_mean": 61.4,
              "machine": {"cores": 2}, "start": "graph (micro_clusters 200)"}  # fmt: skip
    (tmp_path / "digits.json").write_text(json.dumps(result))
    (tmp_path / "no_start.json").write_text(json.dumps({k: v for k, v in result.items() if k != "start"}))
    monkeypatch.setattr(generator, "RESULTS", tmp_path)
    line = generator.row("digits")
    assert "0.877 ± 0.010" in line and "2 / 1.0 min, 2 CPU cores" in line and "| graph (micro_clusters 200) |" in line
    recipe = generator.recipe_row(generator.Recipe("try", "c.yaml", "digits"))
    assert "0.877 ± 0.010 (2 seeds)" in recipe and recipe.endswith("| 1 | graph (micro_clusters 200) / not recorded |")
    with pytest.raises(SystemExit, match='no "start"'):
        generator.row("no_start")
    with pytest.raises(SystemExit, match="missing"):
        generator.row("mnist")
    with pytest.raises(SystemExit, match=r"not other\.yaml"):
        generator.recipe_row(generator.Recipe("try", "other.yaml", "digits"))


def test_every_measured_run_is_listed() -> None:
    """docs/results.md holds every quality file in benchmarks/results, once; the recipes point at listed runs."""
    generator = load_generator()
    listed = [stem for stems in generator.ROWS.values() for stem in stems]
    assert len(listed) == len(set(listed))
    assert sorted(listed) == sorted(p.stem for p in quality_files(RESULT_DIRS[0])), "add the stem to ROWS"
    measured = {r.result for r in generator.RECIPES if not r.result.startswith(generator.HELDOUT)}
    assert measured <= set(listed)
    heldout = json.loads((RESULT_DIRS[0] / "start_heldout.json").read_text())["results"]
    for recipe in generator.RECIPES:
        if recipe.result.startswith(generator.HELDOUT):  # a held-out row: its run exists, its minutes are listed
            assert recipe.result.removeprefix(generator.HELDOUT) in heldout and recipe.timing in listed


def test_every_row_states_its_objective_and_start() -> None:
    """Each measured run says which loss produced it (IDEC as published, plain DEC, or other weights) and its start."""
    generator = load_generator()
    for path in [p for d in RESULT_DIRS for p in quality_files(d)]:
        result = json.loads(path.read_text())
        assert result.get("objective") and result.get("start"), path.name
        assert f"Objective: {result['objective']}." in (path.with_suffix(".md")).read_text(), path.name
    assert "| DEC: KL |" in generator.row("digits")


def test_recorded_commands_run_from_the_repository_root() -> None:
    """No absolute paths of the machine a result was measured on: commands run from the repo root anywhere."""
    import re

    absolute = re.compile(r"(?:^|[\s=])/(?:work|home|root|tmp|Users|mnt|opt|data|srv|var)/")
    for path in sorted(p for d in RESULT_DIRS for p in d.glob("*")):
        if path.is_dir():
            continue
        for line in path.read_text().splitlines():
            assert not absolute.search(line), f"{path.name}: {line[:200]}"
