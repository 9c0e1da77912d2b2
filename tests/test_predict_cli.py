"""Tests of scripts/predict.py on a model trained on synthetic data."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import REPOSITORY, fingerprint_featurizer, write_checkpoint

from hybridmf.data.fingerprints import featurize_smiles
from hybridmf.data.io import write_table
from hybridmf.data.mef import load_mef
from hybridmf.model.module import HybridMF

FINGERPRINT_BITS = 16


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPOSITORY / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


predict = _load_script("predict")


@pytest.fixture(scope="module")
def fingerprint_checkpoint(tmp_path_factory) -> Path:
    """A features-only model of 3 drugs × 2 ADRs whose features are Morgan fingerprints."""
    featurizer = fingerprint_featurizer(FINGERPRINT_BITS)
    torch.manual_seed(0)
    model = HybridMF(n_rows=3, n_cols=2, k=2, row_ids=False, row_feature_dim=FINGERPRINT_BITS + 1, featurizer=featurizer)
    bits = [featurize_smiles(smiles, 2, FINGERPRINT_BITS).tolist() + [0] for smiles in ("CCO", "CCN", "c1ccccc1")]
    model.set_features(row_features=torch.tensor(bits, dtype=torch.float32))  # (3, 17)
    model.set_entities(
        row_ids=["-1", "-2", "-3"], row_names=["ethanol", "ethylamine", "benzene"],
        col_ids=["C1", "C2"], col_names=["rash", "nausea"], known_pairs=torch.tensor([[0, 0]]),
    )
    return write_checkpoint(model, tmp_path_factory.mktemp("fingerprint") / "model.ckpt")


def test_drug_prints_top_table(final_run, capsys):
    checkpoint, _ = final_run
    table = predict.main(["--checkpoint", str(checkpoint), "--drug", "DRUG3", "--top", "3"])
    printed = capsys.readouterr().out

    assert len(table) == 3
    assert table["rank"].tolist() == [1, 2, 3]
    assert not table["known"].any()
    assert "Top 3 ADRs of drug3 (-103) by score (known associations left out)" in printed
    assert "drug_id drug_name" in printed


def test_drug_include_known_flags_known(final_run):
    checkpoint, data_dir = final_run
    data = load_mef(data_dir)
    n_known = int((data.pairs[:, 0] == 3).sum())

    table = predict.main(["--checkpoint", str(checkpoint), "--drug", "-103", "--top", "100", "--include-known"])

    assert len(table) == data.n_cols
    assert int(table["known"].sum()) == n_known


def test_adr_ranks_drugs(final_run):
    checkpoint, data_dir = final_run
    data = load_mef(data_dir)
    n_unknown = data.n_rows - int((data.pairs[:, 1] == 1).sum())

    table = predict.main(["--checkpoint", str(checkpoint), "--adr", "ADR 1"])

    assert len(table) == n_unknown
    assert set(table["adr_id"]) == {"C0000001"}


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_all_writes_exactly_unknown_pairs(final_run, tmp_path, suffix):
    checkpoint, data_dir = final_run
    data = load_mef(data_dir)
    out = tmp_path / f"novel{suffix}"

    table = predict.main(["--checkpoint", str(checkpoint), "--all", "--out", str(out), "--show", "5"])
    written = pd.read_csv(out, dtype={"drug_id": str}) if suffix == ".csv" else pd.read_parquet(out)
    known = {(data.rows["id"][r], data.cols["id"][c]) for r, c in data.pairs}

    assert len(written) == data.n_rows * data.n_cols - data.n_pairs
    assert not known & set(zip(written["drug_id"], written["adr_id"]))
    assert written["rank"].tolist() == list(range(1, len(written) + 1))
    pd.testing.assert_frame_equal(written, table, check_dtype=False)


def test_all_with_top(final_run):
    checkpoint, _ = final_run

    assert len(predict.main(["--checkpoint", str(checkpoint), "--all", "--top", "7"])) == 7


def test_relative_checkpoint_from_other_directory(final_run, tmp_path, monkeypatch):
    checkpoint, _ = final_run
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "final.ckpt").write_bytes(checkpoint.read_bytes())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HYBRIDMF_DATA_DIR", str(tmp_path / "no-data-here"))

    table = predict.main(["--checkpoint", "models/final.ckpt", "--drug", "drug0", "--out", "out/top.csv"])

    assert (tmp_path / "out" / "top.csv").is_file()
    assert len(table) > 0


def test_smiles_ranks_new_molecules(fingerprint_checkpoint, capsys):
    table = predict.main(["--checkpoint", str(fingerprint_checkpoint), "--smiles", "CCO", "--smiles", "CCCl", "--top", "2"])

    assert table["drug_name"].tolist() == ["molecule 1", "molecule 1", "molecule 2", "molecule 2"]
    assert table["smiles"].tolist() == ["CCO", "CCO", "CCCl", "CCCl"]
    assert table["rank"].tolist() == [1, 2, 1, 2]
    assert "new molecules have no known associations" in capsys.readouterr().out


def test_smiles_file_uses_names(fingerprint_checkpoint, tmp_path):
    molecules = tmp_path / "new.csv"
    molecules.write_text("name,smiles\npropanol,CCCO\nphenol,Oc1ccccc1\n")

    table = predict.main(["--checkpoint", str(fingerprint_checkpoint), "--smiles-file", str(molecules), "--top", "1"])

    assert table["drug_name"].tolist() == ["propanol", "phenol"]


def test_smiles_file_error_names_line(fingerprint_checkpoint, tmp_path):
    molecules = tmp_path / "new.csv"
    molecules.write_text("propanol,CCCO\nbroken,C1CC\n")

    with pytest.raises(ValueError, match=r"new\.csv, line 2: could not parse SMILES 'C1CC'"):
        predict.main(["--checkpoint", str(fingerprint_checkpoint), "--smiles-file", str(molecules)])


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        (["--drug", "drugg3"], ValueError, r"drug 'drugg3' not found: no drug has this id or name\. Did you mean 'drug3' \(-103\)"),
        (["--adr", "nothing like it"], ValueError, r"adr 'nothing like it' not found"),
        (["--smiles", "CCO"], ValueError, r"no drug feature encoder .*train a model with --features fingerprints"),
        (["--all", "--out", "novel.xlsx"], ValueError, r"novel\.xlsx: unknown table format '\.xlsx'; use a file name ending in \.csv or \.parquet"),
    ],
)
def test_cli_errors(final_run, arguments, error, message):
    checkpoint, _ = final_run

    with pytest.raises(error, match=message):
        predict.main(["--checkpoint", str(checkpoint), *arguments])


def test_bad_smiles_is_reported(fingerprint_checkpoint):
    with pytest.raises(ValueError, match=r"smiles\[1\]: could not parse SMILES 'CC\(C'"):
        predict.main(["--checkpoint", str(fingerprint_checkpoint), "--smiles", "CCO", "--smiles", "CC(C"])


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--drug", "a", "--all"], r"argument --all: not allowed with argument --drug"),
        ([], r"one of the arguments --drug --adr --smiles --smiles-file --all is required"),
        (["--drug", "a", "--top", "0"], r"--top must be at least 1, got 0"),
        (["--all", "--include-known"], r"--include-known does not apply to --all"),
        (["--smiles", "C", "--include-known"], r"--include-known does not apply to new molecules"),
    ],
)
def test_argument_errors(arguments, message, capsys):
    with pytest.raises(SystemExit):
        predict.main(["--checkpoint", "model.ckpt", *arguments])

    error = capsys.readouterr().err
    assert re.search(message, error), error


def test_run_prints_error_without_traceback(tmp_path, capsys):
    status = predict.run(["--checkpoint", str(tmp_path / "missing.ckpt"), "--all"])

    assert status == 1
    assert capsys.readouterr().err == f"predict.py: error: checkpoint not found: {tmp_path / 'missing.ckpt'}\n"


def test_write_table_rejects_unknown_suffix(tmp_path):
    with pytest.raises(ValueError, match=r"unknown table format '\(no suffix\)'"):
        write_table(pd.DataFrame({"a": [1]}), tmp_path / "table")
