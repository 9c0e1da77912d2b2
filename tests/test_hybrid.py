"""Hybrid models on tiny synthetic data: the model contract, feature matrices, the featurizer.

The contract runs over {dot, mlp} heads × {ids, features, both} towers. Feature matrices
are checked for their column order, offsets and scaling, and the featurizer stored in the
model for rebuilding a training drug's features from its SMILES.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from hybridmf import losses
from hybridmf.config import FitConfig
from hybridmf.data.datamodule import InteractionDataModule
from hybridmf.data.features import (
    CMAP_MISSING_COLUMN,
    MISSING_INDICATOR_SUFFIX,
    assemble_features,
    featurize_new_rows,
    make_featurizer,
)
from hybridmf.data.fingerprints import MISSING_COLUMN, featurize_smiles
from hybridmf.data.interactions import InteractionData
from hybridmf.data.splits import Split, make_split
from hybridmf.model.module import HybridMF
from hybridmf.training import build_features, build_model, build_trainer, load_data

# Pentavalent carbon: RDKit reads the syntax but rejects the molecule.
BAD_VALENCE = "C(C)(C)(C)(C)C"
HEADS = ("dot", "mlp")
TOWERS = {
    "ids": {},
    "features": {"row_ids": False, "col_ids": False, "row_feature_dim": 3, "col_feature_dim": 3},
    "both": {"row_feature_dim": 3, "col_feature_dim": 3},
}


# ---------------------------------------------------------------------------------------
# Model contract over heads × towers
# ---------------------------------------------------------------------------------------


def _block_features(n: int) -> torch.Tensor:
    """``(n, 3)`` features: a one-hot block indicator (first or second half) and a constant 1."""
    first_half = (torch.arange(n) < n // 2).float()  # (n,)
    return torch.stack([first_half, 1 - first_half, torch.ones(n)], dim=1)  # (n, 3)


def _block_labels(n_rows: int, n_cols: int) -> torch.Tensor:
    """``(n_rows, n_cols)`` 0/1 matrix: rows of the first half like columns of the first half."""
    rows = torch.arange(n_rows) < n_rows // 2
    cols = torch.arange(n_cols) < n_cols // 2
    return (rows[:, None] == cols[None, :]).float()  # (n_rows, n_cols)


def _make_model(head: str, tower: str, n_rows: int = 8, n_cols: int = 6) -> HybridMF:
    torch.manual_seed(0)
    model = HybridMF(n_rows, n_cols, k=4, head=head, head_hidden=(16,), pos_weight=1.0, **TOWERS[tower])
    if tower != "ids":
        model.set_features(row_features=_block_features(n_rows), col_features=_block_features(n_cols))
    return model


@pytest.fixture()
def one_thread():
    """Run on one thread: with tensors of a few dozen pairs, intra-op threads cost more than they save."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _fit_full_batch(model: HybridMF, labels: torch.Tensor, rows: torch.Tensor, steps: int = 200) -> None:
    """Train on every pair of ``rows`` with full-batch Adam and weighted BCE."""
    n_cols = labels.shape[1]
    pair_rows = rows.repeat_interleave(n_cols)  # (R * C,)
    pair_cols = torch.arange(n_cols).repeat(len(rows))  # (R * C,)
    targets = labels[pair_rows, pair_cols]  # (R * C,)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = losses.weighted_bce_loss(model(pair_rows, pair_cols), targets, 1.0)
        loss.backward()
        optimizer.step()
    model.eval()


@pytest.mark.parametrize(("head", "tower"), list(itertools.product(HEADS, TOWERS)))
def test_contract_shapes_and_batch_consistency(head, tower):
    model = _make_model(head, tower).eval()
    rows = torch.tensor([0, 5, 7])
    matrix = model.score_rows(rows)  # (3, 6)
    pairs = model(rows.repeat_interleave(6), torch.arange(6).repeat(3))  # (18,)

    assert matrix.shape == (3, 6)
    assert pairs.shape == (18,)
    assert torch.allclose(matrix, pairs.view(3, 6), atol=1e-6)


@pytest.mark.parametrize(("head", "tower"), list(itertools.product(HEADS, TOWERS)))
def test_contract_state_dict_round_trip(head, tower):
    model = _make_model(head, tower).eval()
    copy = HybridMF(**model.hparams)
    copy.load_state_dict(model.state_dict())
    rows = torch.arange(8)

    assert torch.equal(copy.eval().score_rows(rows), model.score_rows(rows))
    assert ("row_tower.features" in model.state_dict()) == (tower != "ids")


@pytest.mark.parametrize(("head", "tower"), list(itertools.product(HEADS, TOWERS)))
def test_contract_new_rows_need_features(head, tower):
    model = _make_model(head, tower).eval()
    if tower == "ids":
        with pytest.raises(ValueError, match="no row feature encoder"):
            model.score_new_rows(torch.zeros(2, 3))
    else:
        assert model.score_new_rows(_block_features(2)).shape == (2, 6)


@pytest.mark.parametrize(("head", "tower"), list(itertools.product(HEADS, TOWERS)))
def test_contract_fits_block_matrix(head, tower, one_thread):
    """Every known pair outscores every unknown pair after training on the whole matrix."""
    model = _make_model(head, tower)
    labels = _block_labels(8, 6)
    _fit_full_batch(model, labels, torch.arange(8))
    scores = model.score_rows(torch.arange(8))  # (8, 6)

    assert scores[labels == 1].min() > scores[labels == 0].max()


@pytest.mark.parametrize(("head", "tower"), list(itertools.product(HEADS, ["features", "both"])))
def test_contract_ranks_cold_rows_by_features(head, tower, one_thread):
    """Rows 3 and 7 have no training pairs, so only their features can put their own block first."""
    model = _make_model(head, tower)
    cold = torch.tensor([3, 7])
    warm = torch.tensor([0, 1, 2, 4, 5, 6])
    model.set_trained_entities(warm, torch.arange(6))
    labels = _block_labels(8, 6)
    _fit_full_batch(model, labels, warm)
    scores = model.score_rows(cold)  # (2, 6)
    new = model.score_new_rows(_block_features(8)[cold])  # (2, 6)

    assert scores[labels[cold] == 1].min() > scores[labels[cold] == 0].max()
    assert torch.allclose(new, scores, atol=1e-6)


def test_id_dropout_only_in_towers_with_features():
    model = HybridMF(n_rows=4, n_cols=3, k=2, row_feature_dim=2, id_dropout=0.5)

    assert model.row_tower.id_dropout == 0.5
    assert model.col_tower.id_dropout == 0.0


# ---------------------------------------------------------------------------------------
# Feature matrices
# ---------------------------------------------------------------------------------------


def test_assemble_order_and_offsets():
    tables = {
        "second": pd.DataFrame({"x": [1, 0, 1], "y": [0, 0, 1]}, index=["c", "a", "b"]),
        "first": pd.DataFrame({"p": [0.5, 0.25, 0.0]}, index=["a", "b", "c"]),
    }
    matrix = assemble_features(tables, ["a", "b", "c"])

    assert matrix.layout == [
        {"source": "second", "width": 2, "offset": 0},
        {"source": "first", "width": 1, "offset": 2},
    ]
    assert matrix.dim == 3
    assert matrix.values.dtype == np.float32
    assert matrix.values.tolist() == [[0.0, 0.0, 0.5], [1.0, 1.0, 0.25], [1.0, 0.0, 0.0]]
    assert matrix.scalers == {}


def test_assemble_scales_only_dense_sources():
    tables = {
        "similarity": pd.DataFrame({"s": [0.0, 0.5, 1.0]}, index=["a", "b", "c"]),
        "ranks": pd.DataFrame({"r": [2.0, 4.0, 6.0], "bit": [0, 1, 1]}, index=["a", "b", "c"]),
    }
    matrix = assemble_features(tables, ["a", "b", "c"])
    std = np.std([2.0, 4.0, 6.0])

    np.testing.assert_allclose(matrix.values[:, 0], [0.0, 0.5, 1.0])
    np.testing.assert_allclose(matrix.values[:, 1], [-2.0 / std, 0.0, 2.0 / std], rtol=1e-6)
    np.testing.assert_allclose(matrix.values[:, 2], [0.0, 1.0, 1.0])
    assert list(matrix.scalers) == ["ranks"]
    assert matrix.scalers["ranks"]["mean"] == [4.0, 0.0]
    assert matrix.scalers["ranks"]["scale"] == pytest.approx([std, 1.0])


def test_assemble_leaves_rows_without_data_out():
    table = pd.DataFrame(
        {"p0": [1.0, 3.0, 0.0, 9.0], "p1": [5.0, 5.0, 0.0, 5.0], "probe_missing": [0, 0, 1, 0]},
        index=["a", "b", "c", "d"],
    )
    matrix = assemble_features({"probe": table}, ["a", "b", "c", "d"], fit_rows=[0, 1, 2])

    assert matrix.scalers["probe"]["mean"] == [2.0, 5.0, 0.0]
    assert matrix.values.tolist() == [[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [7.0, 0.0, 0.0]]


def test_assemble_without_tables():
    matrix = assemble_features({}, ["a", "b"])

    assert matrix.values.shape == (2, 0)
    assert matrix.layout == []
    assert matrix.dim == 0


def test_missing_indicators_share_suffix():
    assert MISSING_COLUMN.endswith(MISSING_INDICATOR_SUFFIX)
    assert CMAP_MISSING_COLUMN.endswith(MISSING_INDICATOR_SUFFIX)


def _tiny_data(row_features: dict[str, pd.DataFrame]) -> InteractionData:
    rows = pd.DataFrame({"id": ["r0", "r1", "r2", "r3"], "name": ["a", "b", "c", "d"]})
    cols = pd.DataFrame({"id": ["c0", "c1"], "name": ["x", "y"]})
    pairs = np.array([[0, 0], [1, 1], [2, 0], [3, 1]], dtype=np.int64)
    return InteractionData(rows, cols, pairs, row_features=row_features)


def test_build_features_fits_scaler_without_cold_rows():
    """Row r2 is held out by the cold split; its extreme value must not move the scaling."""
    dose = pd.DataFrame({"mg": [1.0, 3.0, 1000.0, 2.0]}, index=["r0", "r1", "r2", "r3"])
    data = _tiny_data({"dose": dose})
    split = Split(
        train_pairs=data.pairs[[0, 1, 3]], val_pairs=data.pairs[[2]], val_rows=np.array([2]), kind="cold"
    )
    rows, cols = build_features(FitConfig(), data, split)
    std = np.std([1.0, 3.0, 2.0])

    assert rows.scalers["dose"]["mean"] == [2.0]
    assert rows.scalers["dose"]["scale"] == pytest.approx([std])
    np.testing.assert_allclose(rows.values[:, 0], np.array([-1.0, 1.0, 998.0, 0.0]) / std, rtol=1e-6)
    assert cols.dim == 0


def test_build_features_warm_split_fits_on_every_row():
    dose = pd.DataFrame({"mg": [1.0, 3.0, 1000.0, 2.0]}, index=["r0", "r1", "r2", "r3"])
    data = _tiny_data({"dose": dose})
    rows, _ = build_features(FitConfig(), data, make_split(data.pairs, 4, "warm", 0.25, seed=0))

    assert rows.scalers["dose"]["mean"] == [251.5]


def test_build_model_sets_dims_and_buffers():
    bits = pd.DataFrame({"b0": [1, 0, 1, 0], "b1": [0, 1, 1, 0]}, index=["r0", "r1", "r2", "r3"])
    data = _tiny_data({"bits": bits})
    model = build_model(FitConfig(k=2), data, make_split(data.pairs, 4, "warm", 0.0))

    assert model.hparams.row_feature_dim == 2
    assert model.hparams.col_feature_dim == 0
    assert model.row_tower.features.tolist() == [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]]
    assert model.hparams.featurizer["row"] == [{"source": "bits", "width": 2, "offset": 0}]
    assert model.hparams.featurizer["col"] == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"row_ids": False}, "--no-row-ids needs features on that side"),
        ({"col_ids": False}, "--no-col-ids needs features on that side"),
    ],
)
def test_build_model_rejects_towers_without_input(options, message):
    data = _tiny_data({})
    with pytest.raises(ValueError, match=re.escape(message)):
        build_model(FitConfig(**options), data, make_split(data.pairs, 4, "warm", 0.0))


# ---------------------------------------------------------------------------------------
# Feature sources of the options
# ---------------------------------------------------------------------------------------

DRUG = ["fingerprint", "atc", "target", "pathway", "disease"]
ADR = ["adr_protein", "sim_umls_lin", "sim_umls_jcn", "sim_meddra", "sim_apro"]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"features": "none"}, ([], [])),
        ({"features": "fingerprints"}, (["fingerprint"], [])),
        ({"features": "drug"}, (DRUG, [])),
        ({"features": "adr"}, ([], ADR)),
        ({"features": "all"}, (DRUG, ADR)),
        ({"features": "all", "drug_sources": ("cmap",)}, (["cmap"], ADR)),
        ({"features": "drug", "adr_sources": ("sim_meddra",)}, (DRUG, ["sim_meddra"])),
        ({"drug_sources": ("fingerprints", "drug_similarity")}, (["fingerprint", "sim_ecfp", "sim_atc",
          "sim_proseq", "sim_ppi", "sim_progo", "sim_pathway", "sim_disease", "sim_cmap"], [])),
    ],
)
def test_feature_sources_of_options(options, expected):
    assert FitConfig(**options).feature_sources() == expected


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"adr_sources": ("sim_coexist",)}, "pass --allow-label-leak (YAML: allow_label_leak: true)"),
        ({"drug_sources": ("sim_meddra",)}, "invalid drug_sources ['sim_meddra']: feature source 'sim_meddra' belongs"),
        ({"adr_sources": ("colour",)}, "invalid adr_sources ['colour']: unknown feature source 'colour'"),
    ],
)
def test_feature_sources_rejected(options, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        FitConfig(**options)


def test_label_leak_source_allowed_on_request():
    config = FitConfig(adr_sources=("sim_coexist",), allow_label_leak=True)
    assert config.feature_sources() == ([], ["sim_coexist"])


# ---------------------------------------------------------------------------------------
# Featurizer of new rows
# ---------------------------------------------------------------------------------------


def _fingerprint_model(mef_dir: Path, **options) -> tuple[InteractionData, HybridMF]:
    config = FitConfig(
        data_dir=str(mef_dir), features="fingerprints", fingerprint_bits=64, fingerprint_radius=1, k=2, **options
    )
    data = load_data(config)
    return data, build_model(config, data, make_split(data.pairs, data.n_rows, "cold", 0.2, seed=0))


def test_featurizer_round_trip(tiny_mef_dir):
    data, model = _fingerprint_model(tiny_mef_dir)
    featurizer = model.hparams.featurizer
    rebuilt = featurize_new_rows(data.rows["smiles"].tolist(), featurizer)

    assert featurizer["row"] == [{"source": "fingerprint", "width": 65, "offset": 0}]
    assert (featurizer["fingerprint_radius"], featurizer["fingerprint_bits"]) == (1, 64)
    assert json.loads(json.dumps(featurizer)) == featurizer
    assert rebuilt.shape == (12, 65)
    np.testing.assert_array_equal(rebuilt, model.row_tower.features.numpy())
    np.testing.assert_array_equal(rebuilt[0, :64], featurize_smiles(data.rows["smiles"][0], 1, 64))


@pytest.mark.parametrize("head", HEADS)
def test_features_checkpoint_round_trip(tiny_mef_dir, tmp_path, head):
    """A trained feature model reloads from its checkpoint alone and gives the same scores."""
    config = FitConfig(
        data_dir=str(tiny_mef_dir), features="fingerprints", fingerprint_bits=64, k=3, head=head, bias=True,
        id_dropout=0.5, batch_size=32, max_epochs=2, progress=False, out=str(tmp_path),
    )
    data = load_data(config)
    ranks = np.arange(data.n_cols, dtype=np.float64) * 10.0
    data.col_features["rank"] = pd.DataFrame({"rank": ranks}, index=data.col_ids)
    split = make_split(data.pairs, data.n_rows, "cold", 0.2, seed=0)
    model = build_model(config, data, split)
    trainer, _ = build_trainer(config, tmp_path, monitor=True)
    trainer.fit(model, datamodule=InteractionDataModule(data, split, batch_size=32, seed=0))
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    stored = torch.load(path, map_location="cpu", weights_only=True)
    reloaded = HybridMF.load_from_checkpoint(path, map_location="cpu").eval()
    rows = torch.arange(data.n_rows)

    assert stored["hyper_parameters"]["featurizer"]["scalers"]["col"]["rank"]["mean"] == [45.0]
    assert (reloaded.hparams.row_feature_dim, reloaded.hparams.col_feature_dim) == (65, 1)
    assert torch.equal(reloaded.row_tower.features, model.row_tower.features)
    assert torch.equal(reloaded.col_tower.features, model.col_tower.features)
    assert torch.equal(reloaded.score_rows(rows), model.eval().score_rows(rows))


def test_unparseable_smiles_reaches_model(tiny_mef_dir):
    drug_file = tiny_mef_dir / "data" / "drug.txt"
    lines = drug_file.read_text().splitlines()
    lines[1] = "\t".join(lines[1].split("\t")[:4] + [BAD_VALENCE])
    drug_file.write_text("\n".join(lines) + "\n")
    _, model = _fingerprint_model(tiny_mef_dir)
    model.eval()
    stored = model.row_tower.features[1]  # (65,)
    new = torch.from_numpy(featurize_new_rows([BAD_VALENCE], model.hparams.featurizer))  # (1, 65)

    assert stored[:64].sum() == 0
    assert stored[64] == 1
    assert torch.equal(new[0], stored)
    assert torch.isfinite(model.score_new_rows(new)).all()


def test_featurize_new_rows_fills_other_sources_with_zeros():
    featurizer = {
        "row": [
            {"source": "atc", "width": 3, "offset": 0},
            {"source": "fingerprint", "width": 33, "offset": 3},
            {"source": "cmap", "width": 2, "offset": 36},
        ],
        "col": [],
        "fingerprint_radius": 2,
        "fingerprint_bits": 32,
        "scalers": {"row": {"cmap": {"mean": [4.0, 0.0], "scale": [2.0, 1.0]}}, "col": {}},
    }
    values = featurize_new_rows(["CCO"], featurizer)

    assert values.shape == (1, 38)
    assert values.dtype == np.float32
    assert values[0, :3].tolist() == [0.0, 0.0, 0.0]
    np.testing.assert_array_equal(values[0, 3:35], featurize_smiles("CCO", 2, 32))
    assert values[0, 35] == 0.0
    assert values[0, 36:].tolist() == [0.0, 0.0]


def test_make_featurizer_records_both_sides():
    rows = assemble_features({"dose": pd.DataFrame({"mg": [1.0, 3.0]}, index=["a", "b"])}, ["a", "b"])
    cols = assemble_features({"bits": pd.DataFrame({"b": [1, 0, 1]}, index=["x", "y", "z"])}, ["x", "y", "z"])
    featurizer = make_featurizer(rows, cols, fingerprint_radius=3, fingerprint_bits=1024)

    assert featurizer == {
        "row": [{"source": "dose", "width": 1, "offset": 0}],
        "col": [{"source": "bits", "width": 1, "offset": 0}],
        "fingerprint_radius": 3,
        "fingerprint_bits": 1024,
        "scalers": {"row": {"dose": {"mean": [2.0], "scale": [1.0]}}, "col": {}},
    }


FINGERPRINT_ONLY = {
    "row": [{"source": "fingerprint", "width": 17, "offset": 0}],
    "col": [],
    "fingerprint_radius": 2,
    "fingerprint_bits": 16,
    "scalers": {},
}


@pytest.mark.parametrize(
    ("smiles", "featurizer", "error", "message"),
    [
        ("CCO", FINGERPRINT_ONLY, TypeError, "smiles must be a list of SMILES strings, got the string 'CCO'"),
        (["C"], [], ValueError, "featurizer must be the dict stored as the 'featurizer' hyperparameter"),
        (["C"], {"row": []}, ValueError, "featurizer lacks the key(s) ['fingerprint_radius', 'fingerprint_bits']"),
        (
            ["C"],
            {**FINGERPRINT_ONLY, "row": [{"source": "atc", "width": 4, "offset": 0}]},
            ValueError,
            "the row features of this model have no 'fingerprint' source (sources: ['atc'])",
        ),
        (
            ["C"],
            {**FINGERPRINT_ONLY, "row": [{"source": "fingerprint", "width": 16, "offset": 0}]},
            ValueError,
            "the 'fingerprint' block has width 16, expected fingerprint_bits + 1 = 17",
        ),
        (
            ["C"],
            {**FINGERPRINT_ONLY, "row": [{"source": "fingerprint", "width": 17, "offset": 2}]},
            ValueError,
            "the row source 'fingerprint' starts at column 2, expected 0",
        ),
        (
            ["C"],
            {**FINGERPRINT_ONLY, "row": [{"source": "fingerprint", "width": 17}]},
            ValueError,
            "each row entry must have the keys source, width and offset",
        ),
    ],
)
def test_featurize_new_rows_rejects(smiles, featurizer, error, message):
    with pytest.raises(error, match=re.escape(message)):
        featurize_new_rows(smiles, featurizer)

