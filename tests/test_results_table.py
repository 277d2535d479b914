"""The README's results table is generated from the committed result files, never typed by hand."""

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_generator():
    spec = importlib.util.spec_from_file_location("results_table", REPO / "benchmarks" / "results_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_table_matches_result_files() -> None:
    generator = load_generator()
    readme = (REPO / "README.md").read_text()
    assert generator.readme_with_table(readme) == readme, "run: python benchmarks/results_table.py --write"


def test_table_reads_numbers_from_json(tmp_path, monkeypatch) -> None:
    generator = load_generator()
    (tmp_path / "digits.json").write_text(
        '{"config": "c.yaml", "acc_mean": 0.8766, "acc_std": 0.01, "nmi_mean": 0.5, "ari_mean": 0.4,'
        ' "baseline_acc_mean": 0.7, "target_acc": 0.82, "seeds": [0, 1], "wall_s_mean": 61.4}'
    )
    monkeypatch.setattr(generator, "RESULTS", tmp_path)
    assert "0.877 ± 0.010" in generator.row("digits")
    assert "2 / 61 s" in generator.row("digits")
    assert "not measured" in generator.row("mnist")


def test_every_row_states_its_objective() -> None:
    """Each measured row says which loss produced it (IDEC as published, plain DEC, or other weights)."""
    generator = load_generator()
    import json

    for path in sorted((REPO / "benchmarks" / "results").glob("*.json")):
        result = json.loads(path.read_text())
        if "acc_mean" in result and "runs" in result:  # a quality benchmark file
            assert result.get("objective"), path.name
            assert f"Objective: {result['objective']}." in (path.with_suffix(".md")).read_text(), path.name
    assert "| DEC: KL |" in generator.row("digits")


def test_recorded_commands_run_from_the_repository_root() -> None:
    """No absolute paths of the machine a result was measured on: commands run from the repo root anywhere."""
    import re

    absolute = re.compile(r"(?:^|[\s=])/(?:work|home|root|tmp|Users|mnt|opt|data|srv|var)/")
    for path in sorted((REPO / "benchmarks" / "results").glob("*")):
        for line in path.read_text().splitlines():
            assert not absolute.search(line), f"{path.name}: {line[:200]}"
