"""Unit tests of the towers, heads and the HybridMF module on tiny synthetic data."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from hybridmf.data.datamodule import InteractionDataModule
from hybridmf.data.interactions import InteractionData
from hybridmf.data.splits import make_split
from hybridmf.model.heads import DotHead, MLPHead
from hybridmf.model.module import HybridMF
from hybridmf.model.towers import Tower


def _block_data(n_rows: int = 8, n_cols: int = 6) -> InteractionData:
    """Two blocks: rows of the first half like the first half of the columns, and so on."""
    import pandas as pd

    pairs = [
        (r, c)
        for r in range(n_rows)
        for c in range(n_cols)
        if (r < n_rows // 2) == (c < n_cols // 2)
    ]
    return InteractionData(
        rows=pd.DataFrame({"id": [f"r{i}" for i in range(n_rows)], "name": [f"row {i}" for i in range(n_rows)]}),
        cols=pd.DataFrame({"id": [f"c{i}" for i in range(n_cols)], "name": [f"col {i}" for i in range(n_cols)]}),
        pairs=np.array(pairs, dtype=np.int64),
    )


@pytest.mark.parametrize(
    ("head", "features", "combine"),
    list(itertools.product(["dot", "mlp"], [0, 7], ["sum", "concat"])),
)
def test_batch_scores_equal_pair_scores(head, features, combine):
    torch.manual_seed(0)
    model = HybridMF(n_rows=5, n_cols=4, k=3, head=head, row_feature_dim=features, combine=combine, bias=True).eval()
    if features:
        model.set_features(row_features=torch.rand(5, features))
    rows = torch.tensor([0, 3, 4])
    matrix = model.score_rows(rows)  # (3, 4)
    pairs = model(rows.repeat_interleave(4), torch.arange(4).repeat(3)).view(3, 4)

    assert matrix.shape == (3, 4)
    assert torch.allclose(matrix, pairs, atol=1e-6)


def test_dot_head_is_affine_in_dot_product():
    head = DotHead()
    with torch.no_grad():
        head.affine.weight.fill_(2.0)
        head.affine.bias.fill_(-1.0)
    u = torch.tensor([[1.0, 2.0]])
    v = torch.tensor([[3.0, 4.0]])

    assert head(u, v).item() == pytest.approx(2.0 * 11.0 - 1.0)


def test_mlp_head_batch_of_one():
    head = MLPHead(k=2, hidden=(4,)).eval()
    assert head(torch.ones(1, 2), torch.ones(1, 2)).shape == (1,)


def test_untrained_entity_gets_zero_id_embedding():
    model = HybridMF(n_rows=4, n_cols=3, k=2)
    model.set_trained_entities(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]))

    assert torch.all(model.row_tower(torch.tensor([3])) == 0)
    assert torch.any(model.row_tower(torch.tensor([0])) != 0)


def test_new_row_scores_need_feature_encoder():
    model = HybridMF(n_rows=4, n_cols=3, k=2)
    with pytest.raises(ValueError, match=r"no row feature encoder .*--features none"):
        model.score_new_rows(torch.zeros(1, 5))


def test_new_row_matches_untrained_row_with_same_features():
    model = HybridMF(n_rows=4, n_cols=3, k=2, row_feature_dim=5, bias=True).eval()
    features = torch.rand(4, 5)
    model.set_features(row_features=features)
    model.set_trained_entities(torch.tensor([0, 1, 2]), torch.arange(3))

    assert torch.allclose(model.score_new_rows(features[3:]), model.score_rows(torch.tensor([3])), atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"loss": "hinge"}, r"loss must be one of \('bce', 'bpr', 'margin'\), got 'hinge'"),
        ({"optimizer": "lbfgs"}, r"optimizer must be one of .*got 'lbfgs'"),
        ({"k": 0}, r"k must be at least 1, got 0"),
        ({"head": "cosine"}, r"head must be 'dot' or 'mlp', got 'cosine'"),
        ({"row_ids": False}, r"a tower needs ID embeddings"),
        ({"row_feature_dim": 3, "combine": "product"}, r"combine must be one of \('sum', 'concat'\), got 'product'"),
    ],
)
def test_invalid_model_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HybridMF(n_rows=3, n_cols=3, **kwargs)


def test_set_features_checks_shape():
    model = HybridMF(n_rows=3, n_cols=3, row_feature_dim=4)
    with pytest.raises(ValueError, match=r"row features must have shape \(3, 4\), got \(3, 5\)"):
        model.set_features(row_features=torch.zeros(3, 5))


def test_model_overfits_tiny_matrix():
    """With enough capacity the model reproduces a block matrix: positives outscore unknowns."""
    data = _block_data()
    split = make_split(data.pairs, data.n_rows, "warm", val_fraction=0.0, seed=0)
    pl.seed_everything(0, verbose=False)
    model = HybridMF(data.n_rows, data.n_cols, k=4, pos_weight=1.0, optimizer="adam", lr=0.05)
    datamodule = InteractionDataModule(data, split, batch_size=16, seed=0)
    trainer = pl.Trainer(max_epochs=60, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0)
    trainer.fit(model, datamodule=datamodule)

    scores = model.eval().score_rows(torch.arange(data.n_rows))
    positive = torch.zeros_like(scores, dtype=torch.bool)
    positive[data.pairs[:, 0], data.pairs[:, 1]] = True
    assert scores[positive].min() > scores[~positive].max()
