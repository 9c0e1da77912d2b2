"""Integration tests on the real MEF data: loading, a short training run, checkpoint reload."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hybridmf import HybridMF
from hybridmf.config import FitConfig, load_yaml
from hybridmf.data.features import featurize_new_rows
from hybridmf.data.mef import load_mef, verify
from hybridmf.data.splits import make_split
from hybridmf.training import build_model, load_data, run_fit

REPOSITORY = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.integration


def test_mef_counts(mef_dir: Path):
    data = load_mef(mef_dir)

    assert (data.n_rows, data.n_cols, data.n_pairs) == (746, 817, 24803)
    assert data.rows.loc[2, "name"] == "ropivacaine"
    assert data.cols.loc[0, "id"] == "C0684249"


def test_mef_copy_matches_pinned_checksums(mef_dir: Path):
    assert verify(mef_dir) == {}


@pytest.fixture(scope="module")
def short_run(mef_dir: Path, tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("fit")
    config = FitConfig(data_dir=str(mef_dir), max_epochs=4, out=str(out), progress=False, seed=0)
    return run_fit(config), out


def test_short_run_beats_popularity(short_run):
    metrics, _ = short_run

    assert metrics["auroc"] > metrics["popularity_auroc"] + 0.01


def test_short_run_writes_outputs(short_run):
    metrics, out = short_run
    written = json.loads((out / "metrics.json").read_text())

    for key in ("auroc", "aupr", "accuracy", "ndcg@10", "hr@10", "precision@10", "recall@10",
                "popularity_auroc", "epochs", "seed", "checkpoint"):
        assert key in written
    assert Path(written["checkpoint"]).is_file()
    assert (out / "checkpoints" / "last.ckpt").is_file()
    assert written == pytest.approx(metrics) or written["auroc"] == metrics["auroc"]


def test_checkpoint_reload_gives_same_scores(short_run):
    metrics, out = short_run
    checkpoint = torch.load(metrics["checkpoint"], map_location="cpu", weights_only=True)
    model = HybridMF.load_from_checkpoint(metrics["checkpoint"], map_location="cpu").eval()
    direct = HybridMF(**checkpoint["hyper_parameters"])
    direct.load_state_dict(checkpoint["state_dict"])
    rows = torch.arange(746)

    assert torch.equal(model.score_rows(rows), direct.eval().score_rows(rows))
    assert model.entities["row_ids"][2] == "-71273"
    assert len(model.entities["known_pairs"]) == 24803


def test_short_triplet_run_beats_popularity(mef_dir: Path, tmp_path: Path):
    """Three epochs of the shipped BPR config already rank held-out pairs above popularity."""
    options = load_yaml(REPOSITORY / "configs" / "triplet-bpr.yaml") | {"max_epochs": 3}
    config = FitConfig(**options, data_dir=str(mef_dir), out=str(tmp_path), progress=False, seed=0)

    metrics = run_fit(config)

    assert metrics["model_loss"] == "bpr"
    assert metrics["training_examples"] == "triplet"
    assert metrics["auroc"] > metrics["popularity_auroc"]
    assert metrics["ndcg@10"] > metrics["popularity_ndcg@10"]


@pytest.mark.slow
def test_cold_fingerprint_model_beats_popularity(mef_dir: Path, tmp_path: Path):
    """Held-out drugs ranked from their fingerprints beat ranking ADRs by popularity.

    The large batch and learning rate keep the run short; the shipped config
    configs/cold-drug-fingerprints.yaml trains longer with the defaults.
    """
    config = FitConfig(
        data_dir=str(mef_dir), features="fingerprints", split="cold", bias=True, optimizer="adam",
        weight_decay=1e-3, id_dropout=0.5, batch_size=16000, lr=0.02, max_epochs=5, out=str(tmp_path),
        progress=False, seed=0,
    )
    metrics = run_fit(config)

    assert metrics["row_features"] == ["fingerprint"]
    assert "note" not in metrics
    assert metrics["auroc"] > metrics["popularity_auroc"]
    assert metrics["aupr"] > metrics["popularity_aupr"]


@pytest.mark.slow
def test_all_features_mlp_reloads(mef_dir: Path, tmp_path: Path):
    config = FitConfig(
        data_dir=str(mef_dir), features="all", head="mlp", id_dropout=0.5, batch_size=50000, max_epochs=1,
        out=str(tmp_path), progress=False, seed=0,
    )
    metrics = run_fit(config)
    checkpoint = torch.load(metrics["checkpoint"], map_location="cpu", weights_only=True)
    model = HybridMF.load_from_checkpoint(metrics["checkpoint"], map_location="cpu").eval()
    direct = HybridMF(**checkpoint["hyper_parameters"])
    direct.load_state_dict(checkpoint["state_dict"])
    featurizer = checkpoint["hyper_parameters"]["featurizer"]
    rows = torch.arange(746)

    assert [entry["source"] for entry in featurizer["row"]] == ["fingerprint", "atc", "target", "pathway", "disease"]
    assert [entry["source"] for entry in featurizer["col"]][0] == "adr_protein"
    assert (metrics["row_feature_dim"], metrics["col_feature_dim"]) == (7587, 3412)
    assert model.row_tower.features.shape == (746, 7587)
    assert model.col_tower.features.shape == (817, 3412)
    assert torch.equal(model.score_rows(rows), direct.eval().score_rows(rows))
    assert torch.isfinite(model.score_rows(rows)).all()


def test_new_molecule_features_match_training_drug(mef_dir: Path):
    data = load_data(FitConfig(data_dir=str(mef_dir), features="fingerprints"))
    model = build_model(FitConfig(features="fingerprints"), data, make_split(data.pairs, data.n_rows, "warm", 0.1))
    smiles = data.rows["smiles"].tolist()
    rebuilt = featurize_new_rows(smiles, model.hparams.featurizer)

    np.testing.assert_array_equal(rebuilt, model.row_tower.features.numpy())
    assert int(rebuilt[:, -1].sum()) == 2
