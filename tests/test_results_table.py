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
