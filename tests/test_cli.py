"""Smoke tests of the command line and the YAML configs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import yaml

from hybridmf import HybridMF
from hybridmf.config import FitConfig, load_yaml, parse_config

REPOSITORY = Path(__file__).resolve().parents[1]


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPOSITORY / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_flags_override_config_file(tmp_path: Path):
    path = tmp_path / "run.yaml"
    path.write_text("k: 7\nlr: 0.01\nhead_hidden: [32, 16]\n")
    config = parse_config(["--config", str(path), "--lr", "0.5"])

    assert config.k == 7
    assert config.lr == 0.5
    assert config.head_hidden == (32, 16)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("kk: 3\n", r"unknown option\(s\) \['kk'\]; valid options: .*batch_size"),
        ("- 3\n", r"a config file must be a mapping"),
    ],
)
def test_invalid_config_file(tmp_path: Path, content: str, message: str):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_yaml(path)


def test_invalid_choice_in_config_file(tmp_path: Path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("optimizer: lbfgs\n")
    with pytest.raises(SystemExit):
        parse_config(["--config", str(path)])
    assert "invalid value 'lbfgs' for optimizer; valid values: adam" in capsys.readouterr().err


def test_unknown_feature_choice_is_rejected(capsys):
    with pytest.raises(SystemExit):
        parse_config(["--features", "everything"])
    assert "invalid choice: 'everything'" in capsys.readouterr().err


@pytest.mark.parametrize("path", sorted((REPOSITORY / "configs").glob("*.yaml")), ids=lambda path: path.name)
def test_shipped_configs_parse(path: Path):
    assert isinstance(parse_config(["--config", str(path)]), FitConfig)
    assert set(yaml.safe_load(path.read_text())) <= set(FitConfig().to_dict())


def test_fit_script_smoke(tiny_mef_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "run"
    metrics = _load_script("fit").main(
        ["--features", "none", "--data-dir", str(tiny_mef_dir), "--max-epochs", "2", "--batch-size", "32",
         "--val-fraction", "0.2", "--out", str(out), "--no-progress"]
    )

    assert (out / "metrics.json").is_file()
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 2
    # Without --config, the shipped warm default applies; flags override it.
    assert metrics["blend"] == "ease"
    assert Path(metrics["checkpoint"]).is_file()
    assert "popularity_auroc" in capsys.readouterr().out


def test_fit_without_validation_keeps_last_epoch(tiny_mef_dir: Path, tmp_path: Path):
    out = tmp_path / "final"
    metrics = _load_script("fit").main(
        ["--data-dir", str(tiny_mef_dir), "--max-epochs", "2", "--val-fraction", "0", "--out", str(out), "--no-progress"]
    )

    assert metrics["checkpoint"].endswith("last.ckpt")
    assert metrics["evaluated_on"].startswith("training pairs only")
    assert "train_auroc" in metrics
    assert "auroc" not in metrics


def test_label_leak_source_rejected_on_command_line(capsys):
    with pytest.raises(SystemExit):
        parse_config(["--adr-sources", "sim_coexist"])
    error = capsys.readouterr().err
    assert "'sim_coexist' is computed from the drug-ADR associations" in error
    assert "pass --allow-label-leak (YAML: allow_label_leak: true)" in error


def test_fit_cold_fingerprints_reloads(tiny_mef_dir: Path, tmp_path: Path):
    out = tmp_path / "cold"
    metrics = _load_script("fit").main(
        ["--config", "none", "--features", "fingerprints", "--fingerprint-bits", "64", "--split", "cold", "--val-fraction", "0.2",
         "--data-dir", str(tiny_mef_dir), "--max-epochs", "2", "--batch-size", "32", "--out", str(out), "--no-progress"]
    )
    checkpoint = torch.load(metrics["checkpoint"], map_location="cpu", weights_only=True)
    model = HybridMF.load_from_checkpoint(metrics["checkpoint"], map_location="cpu").eval()
    direct = HybridMF(**checkpoint["hyper_parameters"])
    direct.load_state_dict(checkpoint["state_dict"])
    rows = torch.arange(12)

    assert (metrics["row_features"], metrics["row_feature_dim"], metrics["col_feature_dim"]) == (["fingerprint"], 65, 0)
    assert "note" not in metrics
    assert checkpoint["hyper_parameters"]["featurizer"]["row"] == [{"source": "fingerprint", "width": 65, "offset": 0}]
    assert torch.equal(model.score_rows(rows), direct.eval().score_rows(rows))
    assert not model.row_tower.trained.all()


def test_fit_cold_without_features_records_note(tiny_mef_dir: Path, tmp_path: Path):
    out = tmp_path / "cold-ids"
    _load_script("fit").main(
        ["--config", "none", "--features", "none", "--split", "cold", "--val-fraction", "0.2", "--data-dir", str(tiny_mef_dir),
         "--max-epochs", "1", "--batch-size", "64", "--out", str(out), "--no-progress"]
    )
    written = json.loads((out / "metrics.json").read_text())

    assert written["note"].startswith("cold split without drug features")
    assert "popularity" in written["note"]


def test_shipped_defaults_follow_the_split_and_protocol():
    from hybridmf.config import EvaluateConfig, default_evaluate_config, default_fit_config

    warm = parse_config([], FitConfig, default_config=default_fit_config)
    new_drug = parse_config(["--split", "cold"], FitConfig, default_config=default_fit_config)
    cold_cv = parse_config(["--protocol", "cold-drug"], EvaluateConfig, default_config=default_evaluate_config)
    built_in = parse_config(["--config", "none"], FitConfig, default_config=default_fit_config)
    overridden = parse_config(["--k", "7"], FitConfig, default_config=default_fit_config)

    assert (warm.blend, warm.select_epoch) == ("ease", "last")
    assert new_drug.drug_sources == ("atc",)
    assert not new_drug.row_ids
    assert cold_cv.drug_sources == ("atc",)
    assert built_in == FitConfig()
    assert overridden.k == 7
    assert overridden.blend == "ease"
    # Own data cannot use MEF feature sources, so it falls back to the built-in defaults.
    own_cold = parse_config(["--split", "cold", "--interactions", "pairs.csv"], FitConfig, default_config=default_fit_config)
    assert own_cold.drug_sources == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('bias: "no"', r"option 'bias' must be true or false, got 'no'"),
        ("k: 2.5", r"option 'k' must be a value of type int, got 2.5"),
        ("head_hidden: 64", r"option 'head_hidden' must be a list of int values, got 64"),
        ("drug_sources: atc", r"option 'drug_sources' must be a list of str values, got 'atc'"),
        ("patience: fast", r"option 'patience' must be a value of type int or null, got 'fast'"),
    ],
)
def test_yaml_values_are_type_checked(tmp_path: Path, text: str, message: str):
    path = tmp_path / "bad.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ValueError, match=message):
        load_yaml(path)


def test_yaml_numbers_become_the_option_type(tmp_path: Path):
    path = tmp_path / "ok.yaml"
    path.write_text("lr: 1\npatience: null\nhead_hidden: [8, 4]\n")
    assert load_yaml(path) == {"lr": 1.0, "patience": None, "head_hidden": (8, 4)}


def test_closed_output_ends_a_script_quietly():
    import subprocess
    import sys

    program = (
        "import sys\n"
        "from hybridmf.config import run_command\n"
        "def main(argv):\n"
        "    while True:\n"
        "        print('line ' * 20)\n"
        "sys.exit(run_command(main, [], 'demo.py'))\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    writer.stdout.read(100)
    writer.stdout.close()  # the reader leaves, as `| head` does
    stderr = writer.stderr.read().decode()
    writer.wait(timeout=60)

    assert writer.returncode == 141
    assert "Traceback" not in stderr
    assert "BrokenPipeError" not in stderr
