"""Tests of hybridmf.scoring: checkpoint loading, lookups, rankings and new molecules."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from conftest import fingerprint_featurizer, write_checkpoint
from torch.utils.data import DataLoader

from hybridmf.data.datamodule import RowChunks
from hybridmf.data.features import featurize_new_rows
from hybridmf.data.mef import load_mef
from hybridmf.data.sampling import PositiveSet
from hybridmf.model.module import HybridMF
from hybridmf.scoring import Ranker, load_model, read_molecules

ROW_VECTORS = [1.0, 2.0, -1.0]
COL_VECTORS = [0.1, 0.4, 0.3, -0.2]
KNOWN = [[0, 1], [2, 3]]
SMILES = ["CCO", "c1ccccc1", "CC(=O)O"]
FINGERPRINT_BITS = 32


def _set_entities(model: HybridMF, known=KNOWN, **extra) -> HybridMF:
    model.set_entities(
        row_ids=["-1", "-2", "-3"],
        row_names=["Aspirin", "ibuprofen", "Paracetamol"],
        col_ids=["C0000001", "C0000002", "C0000003", "C0000004"],
        col_names=["rash", "nausea", "headache", "pain"],
        known_pairs=torch.tensor(known, dtype=torch.int64).reshape(-1, 2),  # (P, 2)
        **extra,
    )
    return model


def _outer_product_model(**options) -> HybridMF:
    """A model whose logit of (row i, column j) is exactly ROW_VECTORS[i] * COL_VECTORS[j]."""
    model = HybridMF(n_rows=3, n_cols=4, k=1, **options)
    with torch.no_grad():
        model.row_tower.embedding.weight.copy_(torch.tensor(ROW_VECTORS).unsqueeze(1))  # (3, 1)
        model.col_tower.embedding.weight.copy_(torch.tensor(COL_VECTORS).unsqueeze(1))  # (4, 1)
    return _set_entities(model)


def _fingerprint_model(featurizer: dict | None = None, row_feature_dim: int = FINGERPRINT_BITS + 1) -> HybridMF:
    """A features-only row tower whose features are the fingerprints of SMILES, as training would set them."""
    if featurizer is None:
        featurizer = fingerprint_featurizer(FINGERPRINT_BITS)
    torch.manual_seed(0)
    model = HybridMF(n_rows=3, n_cols=4, k=3, row_ids=False, row_feature_dim=row_feature_dim, featurizer=featurizer, bias=True)
    if any(block["source"] == "fingerprint" for block in featurizer["row"]):
        model.set_features(row_features=torch.as_tensor(featurize_new_rows(SMILES, featurizer)))
    return _set_entities(model)


def _no_featurizer_model() -> HybridMF:
    return _set_entities(HybridMF(n_rows=3, n_cols=4, k=2, row_feature_dim=5))


@pytest.fixture()
def ranker() -> Ranker:
    return Ranker(_outer_product_model())


# --------------------------------------------------------------------------------------
# Round trip through a trained checkpoint.


def test_score_matrix_equals_score_rows(final_run):
    checkpoint, _ = final_run
    model = HybridMF.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    with torch.no_grad():
        expected = model.score_rows(torch.arange(model.hparams.n_rows))  # (R, C)

    scores = Ranker.from_checkpoint(checkpoint).score_matrix()

    assert torch.equal(scores, expected)


def test_rank_cols_scores_equal_score_rows(final_run):
    checkpoint, _ = final_run
    ranker = Ranker.from_checkpoint(checkpoint)
    with torch.no_grad():
        expected = ranker.model.score_rows(torch.tensor([3]))[0].numpy()  # (C,)
    table = ranker.rank_cols("drug3", k=None, include_known=True)
    columns = [ranker.col_index(adr) for adr in table["adr_id"]]

    assert len(table) == ranker.n_cols
    assert np.array_equal(table["score"].to_numpy(), expected[columns])


def test_pair_scores_match_matrix(final_run):
    checkpoint, _ = final_run
    ranker = Ranker.from_checkpoint(checkpoint)
    matrix = ranker.score_matrix()  # (R, C)
    by_adr = ranker.rank_rows("adr 4", k=None, include_known=True)
    rows = [ranker.row_index(drug) for drug in by_adr["drug_id"]]

    assert np.allclose(by_adr["score"].to_numpy(), matrix[rows, 4].numpy(), atol=1e-6)
    assert ranker.score_pairs("drug5", "adr 7")["score"].item() == pytest.approx(matrix[5, 7].item(), abs=1e-6)


def test_score_matrix_frame_is_indexed_by_ids(final_run):
    checkpoint, data_dir = final_run
    frame = Ranker.from_checkpoint(checkpoint).score_matrix(as_frame=True)
    data = load_mef(data_dir)

    assert frame.index.tolist() == data.rows["id"].tolist()
    assert frame.columns.tolist() == data.cols["id"].tolist()


def test_rank_unknown_pairs_lists_exactly_unknown(final_run):
    checkpoint, data_dir = final_run
    data = load_mef(data_dir)
    known = {(data.rows["id"][r], data.cols["id"][c]) for r, c in data.pairs}
    expected = {(r, c) for r in data.rows["id"] for c in data.cols["id"]} - known

    table = Ranker.from_checkpoint(checkpoint).rank_unknown_pairs()
    listed = list(zip(table["drug_id"], table["adr_id"]))

    assert len(listed) == len(expected)
    assert set(listed) == expected
    assert table["rank"].tolist() == list(range(1, len(table) + 1))
    assert np.all(np.diff(table["score"].to_numpy()) <= 0)


def test_load_from_other_working_directory(final_run, tmp_path, monkeypatch):
    checkpoint, _ = final_run
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(checkpoint, elsewhere / "model.ckpt")
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("HYBRIDMF_DATA_DIR", str(tmp_path / "no-data-here"))

    table = Ranker.from_checkpoint("model.ckpt").rank_cols("DRUG0", k=3)

    assert table["drug_name"].tolist() == ["drug0"] * 3


def test_trainer_predict_uses_predict_step(final_run):
    checkpoint, _ = final_run
    model = load_model(checkpoint)
    n_rows = model.hparams.n_rows
    with torch.no_grad():
        expected = model.score_rows(torch.arange(n_rows))  # (R, C)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False)
    nothing = PositiveSet(np.empty((0, 2), dtype=np.int64), n_rows, model.hparams.n_cols)
    chunks = RowChunks(torch.arange(n_rows), nothing, nothing, chunk_size=5)

    from_tensors = trainer.predict(model, dataloaders=DataLoader(torch.arange(n_rows), batch_size=5))
    from_dicts = trainer.predict(model, dataloaders=DataLoader(chunks, batch_size=None))

    assert [len(batch) for batch in from_tensors] == [5, 5, 2]
    assert torch.allclose(torch.cat(from_tensors), expected)  # (R, C)
    assert torch.allclose(torch.cat(from_dicts), expected)  # (R, C)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_scores_match_cpu(final_run):
    checkpoint, _ = final_run
    on_cpu = Ranker.from_checkpoint(checkpoint, map_location="cpu").rank_unknown_pairs(k=50)
    on_gpu = Ranker.from_checkpoint(checkpoint, map_location="cuda").rank_unknown_pairs(k=50)

    assert np.allclose(on_gpu["score"].to_numpy(), on_cpu["score"].to_numpy(), atol=1e-5)


# --------------------------------------------------------------------------------------
# Exact rankings on the outer-product model.


def test_rank_cols_leaves_out_known(ranker):
    table = ranker.rank_cols("aspirin")

    assert table["adr_name"].tolist() == ["headache", "rash", "pain"]
    assert table["score"].tolist() == pytest.approx([0.3, 0.1, -0.2])
    assert table["rank"].tolist() == [1, 2, 3]
    assert not table["known"].any()


def test_rank_cols_includes_and_flags_known(ranker):
    table = ranker.rank_cols("aspirin", k=2, include_known=True)

    assert table["adr_name"].tolist() == ["nausea", "headache"]
    assert table["known"].tolist() == [True, False]


def test_rank_rows_leaves_out_known(ranker):
    assert ranker.rank_rows("pain")["drug_name"].tolist() == ["Aspirin", "ibuprofen"]
    assert ranker.rank_rows("pain", include_known=True)["known"].tolist() == [True, False, False]


def test_rank_unknown_pairs_exact_order(ranker):
    table = ranker.rank_unknown_pairs()
    pairs = list(zip(table["drug_id"], table["adr_id"]))

    # (-2, C0000004) and (-3, C0000002) tie at -0.4 and keep their row-major order.
    assert pairs == [
        ("-2", "C0000002"), ("-2", "C0000003"), ("-1", "C0000003"), ("-2", "C0000001"), ("-1", "C0000001"),
        ("-3", "C0000001"), ("-1", "C0000004"), ("-3", "C0000003"), ("-2", "C0000004"), ("-3", "C0000002"),
    ]
    assert "known" not in table


@pytest.mark.parametrize("chunk_rows", [1, 2, 5])
@pytest.mark.parametrize("k", [1, 4, 10, 50, None])
def test_rank_unknown_pairs_same_in_chunks(chunk_rows, k):
    full = Ranker(_outer_product_model()).rank_unknown_pairs()
    chunked = Ranker(_outer_product_model(), chunk_rows=chunk_rows).rank_unknown_pairs(k=k)

    expected = full if k is None else full.head(k)
    assert chunked.equals(expected)


def test_known_pairs_not_train_pairs_are_left_out():
    model = _set_entities(_outer_product_model(), known=[[0, 1], [0, 2]], train_pairs=torch.tensor([[0, 1]]))

    assert Ranker(model).rank_cols("Aspirin")["adr_name"].tolist() == ["rash", "pain"]


def test_score_pairs_match_matrix(ranker):
    table = ranker.score_pairs(["aspirin", "-3", "IBUPROFEN"], ["nausea", "pain", "C0000001"])

    assert table["score"].tolist() == pytest.approx([0.4, 0.2, 0.2])
    assert table["known"].tolist() == [True, True, False]
    assert "rank" not in table


def test_score_pairs_broadcasts_one_entity(ranker):
    table = ranker.score_pairs("ibuprofen", ["rash", "pain"])

    assert table["drug_id"].tolist() == ["-2", "-2"]
    assert table["score"].tolist() == pytest.approx([0.2, -0.4])


def test_probability_is_sigmoid_of_score(ranker):
    table = ranker.rank_cols("-2", k=None, include_known=True)

    assert np.allclose(table["probability"], 1 / (1 + np.exp(-table["score"].to_numpy())))


def test_triplet_model_warns_probability_uncalibrated(caplog):
    with caplog.at_level(logging.WARNING, logger="hybridmf.scoring"):
        Ranker(_outer_product_model(loss="bpr"))

    assert "not a calibrated probability" in caplog.text


def test_custom_labels_name_columns():
    table = Ranker(_outer_product_model(), row_label="user", col_label="item").rank_cols("aspirin", k=1)

    assert table.columns.tolist() == ["user_id", "user_name", "item_id", "item_name", "score", "probability", "rank", "known"]


# --------------------------------------------------------------------------------------
# Lookups.


@pytest.mark.parametrize("key", ["-1", "Aspirin", "aspirin", "ASPIRIN", "  aspirin "])
def test_row_lookup_by_id_or_case_insensitive_name(ranker, key):
    assert ranker.row_index(key) == 0


def test_column_lookup_by_case_insensitive_id(ranker):
    assert ranker.col_index("c0000003") == 2


@pytest.mark.parametrize(
    ("method", "key", "error", "message"),
    [
        ("row_index", "asprin", ValueError, r"drug 'asprin' not found: .*Did you mean 'Aspirin' \(-1\)\?"),
        ("col_index", "nausia", ValueError, r"adr 'nausia' not found: .*Did you mean 'nausea' \(C0000002\)\?"),
        ("row_index", "zzzzzz", ValueError, r"knows 3 drugs, with ids like '-1' and names like 'Aspirin'"),
        ("row_index", -1, TypeError, r"a drug must be given by its id or name as a string, got int -1"),
    ],
)
def test_lookup_errors(ranker, method, key, error, message):
    with pytest.raises(error, match=message):
        getattr(ranker, method)(key)


def test_shared_name_asks_for_id():
    model = _outer_product_model()
    model.entities["row_names"] = ["aspirin", "Aspirin", "x"]

    with pytest.raises(ValueError, match=r"drug 'ASPIRIN' matches several drugs: -1 \(aspirin\), -2 \(Aspirin\); give the id"):
        Ranker(model).row_index("ASPIRIN")


@pytest.mark.parametrize("k", [0, -3, 2.5, True])
def test_invalid_top_k(ranker, k):
    with pytest.raises(ValueError, match=r"k must be a positive integer or None \(all\), got"):
        ranker.rank_cols("aspirin", k=k)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda ranker: ranker.score_pairs(["aspirin", "-2"], ["rash", "nausea", "pain"]), r"same length \(or length 1\), got 2 and 3"),
        (lambda ranker: Ranker(ranker.model, chunk_rows=0), r"chunk_rows must be at least 1, got 0"),
    ],
)
def test_invalid_arguments(ranker, call, message):
    with pytest.raises(ValueError, match=message):
        call(ranker)


def test_rank_molecules_rejects_wrong_name_count():
    with pytest.raises(ValueError, match=r"names must have one entry per SMILES \(2\), got 1"):
        Ranker(_fingerprint_model()).rank_molecules(["CCO", "CCN"], names=["ethanol"])


def test_model_without_entities_is_rejected():
    with pytest.raises(ValueError, match=r"missing the entity tables \['row_ids', .*load it with load_model"):
        Ranker(HybridMF(n_rows=2, n_cols=2))


# --------------------------------------------------------------------------------------
# New molecules.


def test_known_molecule_scores_like_its_row():
    ranker = Ranker(_fingerprint_model())
    with torch.no_grad():
        expected = ranker.model.score_rows(torch.tensor([2, 0]))  # (2, C)

    scores = ranker.score_molecules([SMILES[2], SMILES[0]])

    assert scores.shape == (2, 4)
    assert torch.allclose(scores, expected, atol=1e-6)


def test_rank_molecules_table():
    table = Ranker(_fingerprint_model()).rank_molecules(["CCO", "CCN"], k=2, names=["ethanol", "ethylamine"])

    assert table.columns.tolist() == ["drug_name", "smiles", "adr_id", "adr_name", "score", "probability", "rank"]
    assert table["drug_name"].tolist() == ["ethanol", "ethanol", "ethylamine", "ethylamine"]
    assert table["rank"].tolist() == [1, 2, 1, 2]
    assert table["score"].iloc[0] >= table["score"].iloc[1]


def test_rank_molecules_default_names():
    table = Ranker(_fingerprint_model()).rank_molecules("CCO", k=1)

    assert table["drug_name"].tolist() == ["molecule 1"]


@pytest.mark.parametrize(
    ("model", "smiles", "message"),
    [
        (_outer_product_model, ["CCO"], r"no drug feature encoder \(it was trained with --features none\), so it can only score the 3 drugs .*--features fingerprints"),
        (_fingerprint_model, ["CCO", "C1CC"], r"smiles\[1\]: could not parse SMILES 'C1CC'"),
        (_fingerprint_model, ["CCO", ""], r"smiles\[1\]: could not parse SMILES '': empty SMILES"),
        (_fingerprint_model, [], r"smiles is empty"),
        (_no_featurizer_model, ["CCO"], r"stores no featurizer settings"),
        (
            lambda: _fingerprint_model(
                featurizer={
                    "row": [{"source": "atc", "width": 5, "offset": 0}],
                    "col": [],
                    "fingerprint_radius": 2,
                    "fingerprint_bits": 16,
                    "scalers": {},
                },
                row_feature_dim=5,
            ),
            ["CCO"],
            r"no 'fingerprint' source \(sources: \['atc'\]\), so a SMILES carries no information",
        ),
    ],
)
def test_molecule_errors(model, smiles, message):
    with pytest.raises(ValueError, match=message):
        Ranker(model()).score_molecules(smiles)


def test_molecule_scores_survive_checkpoint(tmp_path):
    model = _fingerprint_model()
    path = write_checkpoint(model, tmp_path / "fingerprint.ckpt")

    reloaded = Ranker.from_checkpoint(path)

    assert torch.equal(reloaded.score_molecules(SMILES), Ranker(model).score_molecules(SMILES))


# --------------------------------------------------------------------------------------
# Molecule files.


def test_read_molecules_skips_header_and_blank_lines(tmp_path):
    path = tmp_path / "new.csv"
    path.write_text("Name,SMILES\nethanol, CCO\n\nbenzene,c1ccccc1\n")

    table = read_molecules(path)

    assert table.values.tolist() == [["ethanol", "CCO", 2], ["benzene", "c1ccccc1", 4]]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("ethanol,CCO\nbenzene c1ccccc1\n", r"new\.csv, line 2: expected 2 comma-separated fields \(name, smiles\), found 1"),
        ("ethanol,CCO\nbenzene,\n", r"new\.csv, line 2: the field 'smiles' is empty"),
        ("ethanol,CCO\n\nethanol,CC\n", r"new\.csv, line 3: the name 'ethanol' already appears on line 1"),
        ("ethanol,CCO\nring,C1CC\n", r"new\.csv, line 2: could not parse SMILES 'C1CC'"),
        ("name,smiles\n", r"new\.csv: the file has a header but no molecules"),
        ("\n\n", r"new\.csv: the file is empty"),
    ],
)
def test_read_molecules_errors(tmp_path, content, message):
    path = tmp_path / "new.csv"
    path.write_text(content)

    with pytest.raises(ValueError, match=message):
        read_molecules(path)


# --------------------------------------------------------------------------------------
# Loading checkpoints.


def _truncated(path: Path, checkpoint: Path) -> None:
    path.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])


def _wrong_format(path: Path, checkpoint: Path) -> None:
    content = torch.load(checkpoint, map_location="cpu", weights_only=True)
    content["hybridmf"]["format"] = 99
    torch.save(content, path)


def _foreign(path: Path, checkpoint: Path) -> None:
    torch.save({"state_dict": {"weight": torch.zeros(2)}, "hyper_parameters": {}}, path)


def _plain_tensor(path: Path, checkpoint: Path) -> None:
    torch.save(torch.zeros(3), path)


@pytest.mark.parametrize(
    ("write", "error", "message"),
    [
        (None, FileNotFoundError, r"checkpoint not found: .*missing\.ckpt"),
        (_truncated, ValueError, r"bad\.ckpt is not a complete PyTorch checkpoint .*truncated"),
        (_wrong_format, ValueError, r"bad\.ckpt: checkpoint format 99 is not supported .*reads format 1"),
        (_foreign, ValueError, r"bad\.ckpt is not a hybridmf checkpoint: it lacks the 'hybridmf'"),
        (_plain_tensor, ValueError, r"bad\.ckpt is not a hybridmf checkpoint: it contains a Tensor"),
    ],
)
def test_load_model_errors(final_run, tmp_path, write, error, message):
    checkpoint, _ = final_run
    path = tmp_path / ("missing.ckpt" if write is None else "bad.ckpt")
    if write is not None:
        write(path, checkpoint)

    with pytest.raises(error, match=message):
        load_model(path)


def test_load_model_rejects_directory(final_run):
    checkpoint, _ = final_run
    run_dir = checkpoint.parent.parent

    with pytest.raises(ValueError, match=r"is a directory; pass a \.ckpt file.*found under it: .*last\.ckpt"):
        load_model(run_dir)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_load_model_rejects_unavailable_cuda(final_run):
    with pytest.raises(ValueError, match=r"map_location 'cuda' requests a CUDA device, but CUDA is not available"):
        load_model(final_run[0], map_location="cuda")


def test_load_model_rejects_invalid_device(final_run):
    with pytest.raises(ValueError, match=r"map_location 'gpu0' is not a valid device"):
        load_model(final_run[0], map_location="gpu0")
