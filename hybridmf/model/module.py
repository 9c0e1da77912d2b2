"""The ``HybridMF`` Lightning module: row tower + column tower + head + loss.

The network parts (``Tower``, heads) are plain ``nn.Module``s; this module wires them,
computes the loss, logs and evaluates. Every constructor argument is a plain value saved
with ``save_hyperparameters()``, so ``HybridMF.load_from_checkpoint(path)`` rebuilds the
model alone. Feature matrices are buffers (part of the state dict), and the entity ids,
names and known pairs travel in the checkpoint under the key ``"hybridmf"``.

Training uses Lightning's manual optimization: ``training_step`` itself runs zero_grad,
backward and the optimizer step, the same step as automatic optimization with less
overhead. Lightning therefore rejects a ``Trainer`` with ``gradient_clip_val`` or
``accumulate_grad_batches`` above 1 for this module.

A batch with the keys ``row``, ``col`` and ``label`` trains the weighted BCE loss, and a
batch with ``row``, ``pos`` and ``neg`` trains the BPR or margin triplet loss. Either may
carry ``weight``, the example weights that the data module derives from the confidence
weights of the training pairs; a ``GridBatch`` carries them as the ``(R, C)`` matrix
``weights``. Both kinds of model return logits. BCE-trained logits estimate the log-odds of a positive (skewed by
``pos_weight``), so logit 0 is a decision threshold. Triplet losses only compare scores
within a row: their scores rank columns but are not calibrated probabilities, and a
constant added to all scores of a row leaves the loss unchanged. The validation
``accuracy``, which thresholds the logits at 0, is therefore not meaningful for
triplet-trained models. The per-row ranking metrics (NDCG@k, row AUROC, ...) are. The
pooled AUROC and AUPR compare scores across rows, which a triplet loss never does
directly, so they can understate such a model.

With ``blend="ease"`` the trained model is an ensemble with the EASE item-item model
(``hybridmf.evaluation.baselines.EASE``), and with ``blend="ridge"`` an ensemble with
ridge regression from the row features (``hybridmf.evaluation.baselines.FeatureRidge``),
which suits new rows. After training, :meth:`HybridMF.fit_blend` fits the baseline part
on the training pairs and stores reference quantiles of both scorers, and from then on
``score_rows`` returns the blend of the two: by global rank (``blend_mode="rank"``), or
with the part's within-row z-scores added to the model's logits (``blend_mode="row"``),
see ``hybridmf.model.blend``. Training and validation epochs see the model's own logits.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from hybridmf import losses
from hybridmf.distributed import merge_evaluator_across_processes
from hybridmf.evaluation.baselines import EASE, FeatureRidge
from hybridmf.evaluation.metrics import RankingEvaluator
from hybridmf.model.blend import (
    MAX_REFERENCE_PAIRS,
    QUANTILE_GRID_SIZE,
    blend_logits,
    check_blend_options,
    check_blend_size,
    quantile_grid,
    within_row_logits,
    within_row_zscores,
)
from hybridmf.model.heads import make_head
from hybridmf.model.towers import Tower

logger = logging.getLogger(__name__)

CHECKPOINT_KEY = "hybridmf"
CHECKPOINT_FORMAT = 1
OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop,
    "sgd": torch.optim.SGD,
    "adagrad": torch.optim.Adagrad,
}
LOSS_NAMES = ("bce", "bpr", "margin")
# Score values held at once while fitting or scoring the baseline part of a blend: 4M float32 values, 16 MiB.
REFERENCE_CHUNK_CELLS = 1 << 22


class HybridMF(pl.LightningModule):
    """Hybrid matrix factorization for binary implicit feedback.

    Args:
        n_rows: Number of row entities (drugs, users).
        n_cols: Number of column entities (ADRs, items).
        k: Size of the latent space.
        head: ``"dot"`` (dot product + affine output) or ``"mlp"`` (deep interaction head).
        head_hidden: Hidden layer sizes of the MLP head.
        head_dropout: Dropout of the MLP head.
        head_product: Feed ``u ⊙ v`` to the MLP head too.
        row_ids: Learn an ID embedding per row.
        col_ids: Learn an ID embedding per column.
        row_feature_dim: Size of the row feature vectors; 0 for none.
        col_feature_dim: Size of the column feature vectors; 0 for none.
        encoder_hidden: Hidden layer sizes of the feature encoders (empty: linear map).
        encoder_activation: Activation of the encoders.
        encoder_dropout: Dropout of the encoders.
        encoder_norm: ``None``, ``"batch"`` or ``"layer"`` normalization in the encoders.
        combine: ``"sum"`` or ``"concat"`` of ID embedding and encoded features.
        id_dropout: Probability of dropping an example's ID embeddings in training, in the
            towers that also have features. Towers without features ignore it.
        bias: Learn a bias per row and per column (a popularity prior).
        loss: ``"bce"`` (class-weighted binary cross-entropy), ``"bpr"`` or ``"margin"``
            (triplet losses; their scores rank but are not calibrated probabilities).
        pos_weight: Weight of positives in the BCE loss (unknown pairs weigh 1). A training
            pair with confidence weight ``w`` weighs ``pos_weight * w``.
        margin: Margin of the margin (hinge) loss.
        l2: Penalty on the squared norm of the latent vectors and biases of each batch.
        row_feature_l2: Penalty on the sum of squared weights of the row feature encoder,
            added once per training step. Wide feature vectors (thousands of fingerprint
            bits or ATC codes for a few hundred drugs) need it to generalize to new rows.
        col_feature_l2: The same for the column feature encoder.
        optimizer: One of ``OPTIMIZERS``.
        lr: Learning rate.
        weight_decay: Weight decay of the optimizer.
        eval_k: Cut-off of the ranking metrics (NDCG@k, hit rate@k, ...).
        featurizer: Plain settings that turn raw entity data into feature vectors (for
            example the fingerprint radius and size); stored for prediction time.
        eval_pooled_sample: Estimate the pooled validation AUROC and AUPR on a sample of
            at most this many candidate pairs, which bounds the evaluator's memory; None
            keeps every candidate (exact). See ``RankingEvaluator``.
        blend: ``"none"``, ``"ease"`` to blend the trained model with EASE, or
            ``"ridge"`` to blend it with ridge regression from the row features, once
            :meth:`fit_blend` has run and as ``blend_mode`` sets. See :meth:`score_rows`.
        blend_weight: Weight of the baseline part of the blend, in [0, 1] (see ``blend_mode``).
        blend_ease_l2: L2 regularisation strength lambda of the EASE part.
        blend_ridge_l2: L2 regularisation strength lambda of the ridge part.
        blend_mode: ``"rank"`` blends by global rank. ``"row"`` adds the part's
            within-row z-scores, times ``blend_weight`` and the standard deviation of the
            model's logits, to the model's logits, so that each row keeps the model's
            level against the other rows.

    Raises:
        ValueError: When ``loss``, ``optimizer``, ``k`` or a blend option is invalid, or
            a blend is requested for more columns or cells than ``hybridmf.model.blend``
            allows, or ``blend="ridge"`` without row features.

    Example:
        >>> model = HybridMF(n_rows=3, n_cols=4, k=2)
        >>> model.score_rows(torch.tensor([0, 2])).shape
        torch.Size([2, 4])
    """

    def __init__(
        self,
        n_rows: int,
        n_cols: int,
        k: int = 5,
        head: str = "dot",
        head_hidden: Sequence[int] = (64,),
        head_dropout: float = 0.0,
        head_product: bool = True,
        row_ids: bool = True,
        col_ids: bool = True,
        row_feature_dim: int = 0,
        col_feature_dim: int = 0,
        encoder_hidden: Sequence[int] = (),
        encoder_activation: str = "relu",
        encoder_dropout: float = 0.0,
        encoder_norm: str | None = None,
        combine: str = "sum",
        id_dropout: float = 0.0,
        bias: bool = False,
        loss: str = "bce",
        pos_weight: float = 50.0,
        margin: float = 1.0,
        l2: float = 0.0,
        row_feature_l2: float = 0.0,
        col_feature_l2: float = 0.0,
        optimizer: str = "rmsprop",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        eval_k: int = 10,
        featurizer: dict[str, Any] | None = None,
        eval_pooled_sample: int | None = None,
        blend: str = "none",
        blend_weight: float = 0.5,
        blend_ease_l2: float = 100.0,
        blend_ridge_l2: float = 3.0,
        blend_mode: str = "rank",
    ) -> None:
        super().__init__()
        if loss not in LOSS_NAMES:
            raise ValueError(f"loss must be one of {LOSS_NAMES}, got {loss!r}")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {optimizer!r}")
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        check_blend_options(blend, blend_weight, blend_ease_l2, blend_ridge_l2, blend_mode)
        if blend != "none":
            check_blend_size(n_rows, n_cols, blend, row_feature_dim)
        self.save_hyperparameters()
        encoder = dict(
            encoder_hidden=tuple(encoder_hidden),
            activation=encoder_activation,
            dropout=encoder_dropout,
            norm=encoder_norm,
            combine=combine,
            id_dropout=id_dropout,
        )
        self.row_tower = Tower(n_rows, k, row_ids, row_feature_dim, **encoder)
        self.col_tower = Tower(n_cols, k, col_ids, col_feature_dim, **encoder)
        self.head = make_head(head, k, tuple(head_hidden), head_dropout, head_product)
        self.row_bias = nn.Embedding(n_rows, 1) if bias else None
        self.col_bias = nn.Embedding(n_cols, 1) if bias else None
        if bias:
            nn.init.zeros_(self.row_bias.weight)
            nn.init.zeros_(self.col_bias.weight)
        if blend != "none":
            self._register_blend_buffers(n_rows, n_cols, row_feature_dim)
        self.evaluator = RankingEvaluator(k=eval_k, threshold=0.0, pooled_sample=eval_pooled_sample)
        # Per stage: the sum of batch losses weighted by batch size, and the examples seen.
        self._loss_totals: dict[str, tuple[Tensor | float, int]] = {}
        self.entities: dict[str, Any] = {}
        # training_step runs the optimizer itself (Lightning's manual optimization). The
        # step is the one Lightning's automatic optimization runs (forward, zero_grad,
        # backward, step) without its closure and hooks. That made the batch-2000 epoch on
        # MEF about 4 % shorter (CPU, docs/benchmarks.md).
        self.automatic_optimization = False

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning 2.6 sets _current_fx_name before and after every hook call, about 40
        # times per training step. nn.Module.__setattr__ first checks each value against
        # the parameters, submodules and buffers. Skipping that made the batch-2000 epoch
        # on MEF about 7 % shorter (CPU, docs/benchmarks.md). The value is a hook name or
        # None, so it lands in the instance dict either way.
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    # ----------------------------------------------------------------------------------
    # Data that is not a hyperparameter: features, trained entities, ids and names.

    def set_features(self, row_features: Tensor | None = None, col_features: Tensor | None = None) -> None:
        """Copy the ``(n_rows, d_row)`` / ``(n_cols, d_col)`` feature matrices into the towers.

        Raises:
            ValueError: When a matrix does not match the feature size the model was built for.
        """
        for tower, features, side in ((self.row_tower, row_features, "row"), (self.col_tower, col_features, "column")):
            if features is None:
                continue
            expected = tuple(tower.features.shape) if tower.encoder is not None else (len(tower.trained), 0)
            if tuple(features.shape) != expected:
                raise ValueError(f"{side} features must have shape {expected}, got {tuple(features.shape)}")
            tower.features.copy_(features)

    def set_trained_entities(self, rows: Tensor, cols: Tensor) -> None:
        """Mark which rows and columns appear in training examples. The others get zero ID embeddings."""
        for tower, present in ((self.row_tower, rows), (self.col_tower, cols)):
            tower.trained.zero_()
            tower.trained[present] = True
        if self.row_bias is not None:
            with torch.no_grad():
                self.row_bias.weight[~self.row_tower.trained] = 0.0

    def set_entities(self, **entities: Any) -> None:
        """Store ids, names and known pairs (plain lists and tensors) to save with the checkpoint."""
        self.entities.update(entities)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = {"format": CHECKPOINT_FORMAT, **self.entities}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        stored = checkpoint.get(CHECKPOINT_KEY)
        if stored is None:
            raise ValueError(
                f"this checkpoint has no {CHECKPOINT_KEY!r} entry, so it was not written by "
                f"hybridmf; write it with scripts/fit.py"
            )
        if stored.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(
                f"checkpoint format {stored.get('format')!r} is not supported by this version "
                f"of hybridmf (it reads format {CHECKPOINT_FORMAT}); retrain or use the "
                f"hybridmf version that wrote it"
            )
        self.entities = {key: value for key, value in stored.items() if key != "format"}

    # ----------------------------------------------------------------------------------
    # Scoring.

    def forward(self, rows: Tensor, cols: Tensor) -> Tensor:
        """Return the ``(B,)`` logits of the pairs ``(rows[i], cols[i])``."""
        logits = self.head(self.row_tower(rows), self.col_tower(cols))  # (B,)
        return logits + self._bias(rows, cols)

    def _bias(self, rows: Tensor, cols: Tensor) -> Tensor | float:
        if self.row_bias is None:
            return 0.0
        return self.row_bias(rows).squeeze(1) + self.col_bias(cols).squeeze(1)  # (B,)

    def network_logits(self, rows: Tensor) -> Tensor:
        """Return the ``(N, n_cols)`` logits of the trained network alone for the rows ``(N,)``.

        Training uses them. They equal :meth:`score_rows` unless a fitted blend changes
        the latter.
        """
        cols = self.col_tower.all()  # (C, k)
        scores = self.head.score_matrix(self.row_tower(rows), cols)  # (N, C)
        if self.row_bias is not None:
            scores = scores + self.row_bias(rows) + self.col_bias.weight.T  # (N, 1) + (1, C)
        return scores

    def score_rows(self, rows: Tensor) -> Tensor:
        """Return the ``(N, n_cols)`` scores of every column for the rows ``(N,)``.

        Without a fitted blend these are the network's logits (:meth:`network_logits`).
        After :meth:`fit_blend`, they are
        ``logit((1 - w) * F_model(s_model) + w * F_part(s_part))``
        (:func:`hybridmf.model.blend.blend_logits`) with ``blend_mode="rank"``, and
        ``s_model + w * sigma * z_part`` (:func:`hybridmf.model.blend.within_row_logits`)
        with ``blend_mode="row"``. Here ``w`` is ``blend_weight``. With
        ``blend="ease"``, ``s_part = X[rows] @ B`` is the EASE score from the stored
        training interactions ``X`` and weights ``B``. With ``blend="ridge"``,
        ``s_part = (x - m) @ W + c`` is the ridge score from the row's features ``x``.
        Each ``F`` is the empirical CDF of that scorer's scores on the training
        candidates (leave-one-out scores for the ridge part). These blended scores rank
        pairs across all rows, but they are not the log-odds of a positive, so an
        accuracy that thresholds them at 0 is not meaningful. Under ``blend="ease"`` a
        row without training interactions gets the same EASE part in every column, so it
        is ranked by the model alone.
        """
        scores = self.network_logits(rows)  # (N, C)
        if not self.blend_fitted:
            return scores
        if self.hparams.blend_mode == "row":
            return within_row_logits(scores, self._part_row_zscores(rows), self.blend_model_scale, self._weight)
        return self._blend(scores, self._part_scores(rows))

    def score_pairs(self, rows: Tensor, cols: Tensor) -> Tensor:
        """Return the ``(P,)`` scores of the pairs ``(rows[i], cols[i])``.

        They equal the matching entries of :meth:`score_rows` up to float rounding, with
        the blend applied once it is fitted.
        """
        scores = self(rows, cols)  # (P,)
        if not self.blend_fitted:
            return scores
        if self.hparams.blend_mode == "row":
            # A z-score needs the whole row: score the distinct rows once, then pick the pairs.
            unique, position = torch.unique(rows, return_inverse=True)
            step = max(1, REFERENCE_CHUNK_CELLS // self.hparams.n_cols)
            z = torch.cat([self._part_row_zscores(chunk) for chunk in unique.split(step)])  # (U, C)
            return within_row_logits(scores, z[position, cols], self.blend_model_scale, self._weight)
        return self._blend(scores, self._part_pair_scores(rows, cols))

    def score_new_rows(self, features: Tensor) -> Tensor:
        """Return the ``(N, n_cols)`` scores of new rows from their ``(N, d_row)`` features.

        With a fitted ``blend="ridge"`` these are the blend of the network's logits with
        the ridge scores of the features, on the scale of :meth:`score_rows`. Otherwise
        they are the network's logits. A new row has no training interactions, so the
        EASE part of a blend would be the same for all its columns and would not change
        its ranking. Under an EASE blend these logits are therefore on the network's
        scale, not on the scale of :meth:`score_rows`.

        Raises:
            ValueError: When the model has no row feature encoder.
        """
        if self.row_tower.encoder is None:
            raise ValueError(
                "this model has no row feature encoder (it was trained with --features none), "
                "so it cannot score a new entity; train it with --features fingerprints or drug"
            )
        scores = self.head.score_matrix(self.row_tower.encode_features(features), self.col_tower.all())
        if self.col_bias is not None:
            scores = scores + self.col_bias.weight.T  # (N, C) + (1, C)
        if self.blend_fitted and self.hparams.blend == "ridge":
            part = self._ridge_feature_scores(features)  # (N, C)
            if self.hparams.blend_mode == "row":
                return within_row_logits(scores, within_row_zscores(part), self.blend_model_scale, self._weight)
            return self._blend(scores, part)
        return scores

    # ----------------------------------------------------------------------------------
    # Blend with a baseline: EASE or feature ridge regression.

    def _register_blend_buffers(self, n_rows: int, n_cols: int, row_feature_dim: int) -> None:
        """Create the buffers of the blend at construction, so that a checkpoint loads into them."""
        if self.hparams.blend == "ease":
            self.register_buffer("blend_ease_weights", torch.zeros(n_cols, n_cols))  # (C, C) EASE B
            self.register_buffer("blend_interactions", torch.zeros(n_rows, n_cols, dtype=torch.bool))  # (R, C) X
            self.register_buffer("blend_ease_quantiles", torch.zeros(QUANTILE_GRID_SIZE))  # (G,)
        else:
            self.register_buffer("blend_ridge_weights", torch.zeros(row_feature_dim, n_cols))  # (d, C) W
            self.register_buffer("blend_ridge_feature_mean", torch.zeros(row_feature_dim))  # (d,) m
            self.register_buffer("blend_ridge_target_mean", torch.zeros(n_cols))  # (C,) c
            self.register_buffer("blend_ridge_quantiles", torch.zeros(QUANTILE_GRID_SIZE))  # (G,)
        self.register_buffer("blend_model_quantiles", torch.zeros(QUANTILE_GRID_SIZE))  # (G,)
        if self.hparams.blend_mode == "row":
            # Checkpoints from before blend_mode have no such buffer and load as "rank".
            self.register_buffer("blend_model_scale", torch.tensor(1.0))  # standard deviation of the model's logits
        self.register_buffer("blend_is_fitted", torch.tensor(False))

    @property
    def blend_fitted(self) -> bool:
        """Whether :meth:`score_rows` returns the blend: ``blend`` is set and :meth:`fit_blend` has run."""
        return self.hparams.blend != "none" and bool(self.blend_is_fitted)

    @property
    def _weight(self) -> float:
        return float(self.hparams.blend_weight)

    def _part_row_zscores(self, rows: Tensor) -> Tensor:
        """Return the ``(N, n_cols)`` within-row z-scores of the baseline part for the rows ``(N,)``.

        Under an EASE blend a row's mean and spread come from its candidates, the columns
        that are not its training positives. Under a ridge blend they come from all columns.
        """
        part = self._part_scores(rows)  # (N, C)
        candidates = ~self.blend_interactions[rows] if self.hparams.blend == "ease" else None
        return within_row_zscores(part, candidates)

    def _blend(self, model_scores: Tensor, part_scores: Tensor) -> Tensor:
        """Blend the network's scores with the baseline part's scores of the same pairs."""
        part_quantiles = self.blend_ease_quantiles if self.hparams.blend == "ease" else self.blend_ridge_quantiles
        return blend_logits(
            model_scores, part_scores, self.blend_model_quantiles, part_quantiles, self.hparams.blend_weight
        )

    @torch.no_grad()
    def fit_blend(self, train_pairs: np.ndarray | Tensor, seed: int = 0) -> None:
        """Fit the baseline part of the blend and the reference quantiles of both scorers.

        With ``blend="ease"``, EASE (``hybridmf.evaluation.baselines.EASE`` with lambda
        ``blend_ease_l2``) is fitted on ``train_pairs``, and its weights and the training
        interactions are stored. With ``blend="ridge"``, ridge regression from the row
        features (``hybridmf.evaluation.baselines.FeatureRidge`` with lambda
        ``blend_ridge_l2``, one scale per feature source) is fitted on the rows of
        ``train_pairs``, and its weights and means are stored. The reference scores are
        those of the candidate pairs: every pair of a row with training pairs that is not
        itself a training pair, the pairs that evaluation ranks. The model (in eval mode)
        scores them, and so does the part: EASE in sample, ridge by leave-one-out, which
        puts the training rows on the scale of new rows. ``QUANTILE_GRID_SIZE`` quantiles
        of each are stored. With more than ``MAX_REFERENCE_PAIRS`` candidates, a uniform
        sample of about that many is used, drawn with ``seed``.

        Args:
            train_pairs: ``(P, 2)`` integer ``(row, column)`` training pairs, P >= 1.
            seed: Seed of the sample of reference pairs; unused when all candidates fit.

        Raises:
            TypeError: When ``train_pairs`` does not contain integers.
            ValueError: When the model was built with ``blend="none"``, or
                ``train_pairs`` is empty, not ``(P, 2)`` or out of range.

        Example:
            >>> model = HybridMF(n_rows=3, n_cols=4, k=2, blend="ease", blend_ease_l2=1.0).eval()
            >>> model.fit_blend(np.array([[0, 0], [0, 1], [1, 1], [2, 3]]))
            >>> model.blend_fitted, model.score_rows(torch.tensor([0])).shape
            (True, torch.Size([1, 4]))
        """
        blend = self.hparams.blend
        if blend == "none":
            raise ValueError("fit_blend needs a model built with blend='ease' or 'ridge', but this one has blend='none'")
        n_rows, n_cols = self.hparams.n_rows, self.hparams.n_cols
        if blend == "ease":
            part = EASE(l2=self.hparams.blend_ease_l2, fallback="zeros").fit(train_pairs, n_rows, n_cols)
        else:
            part = FeatureRidge(l2=self.hparams.blend_ridge_l2, blocks=self._row_feature_blocks(), fallback="zeros")
            part.fit(train_pairs, n_rows, n_cols, row_features=self.row_tower.features.cpu())
        interactions = part.train_matrix_ > 0  # (R, C)
        rows = torch.nonzero(interactions.any(dim=1)).squeeze(1)  # (R_train,)
        if len(rows) == 0:
            raise ValueError(f"train_pairs is empty: the {blend} part of the blend needs at least one training pair")
        self.blend_is_fitted.fill_(False)
        if blend == "ease":
            self.blend_ease_weights.copy_(part.column_weights_)
            self.blend_interactions.copy_(interactions)
            part_scores = self._ease_scores
        else:
            self.blend_ridge_weights.copy_(part.weights_)
            self.blend_ridge_feature_mean.copy_(part.feature_mean_)
            self.blend_ridge_target_mean.copy_(part.target_mean_)
            # Training rows are scored by leave-one-out; part.train_rows_ are the rows of ``rows``, in order.
            position = torch.full((n_rows,), -1, dtype=torch.long)
            position[part.train_rows_] = torch.arange(len(part.train_rows_))
            loo_scores = part.loo_scores_.to(self.device)

            def part_scores(chunk: Tensor) -> Tensor:
                return loo_scores[position[chunk.cpu()].to(self.device)]

        was_training = self.training
        self.eval()
        model_scores, reference_part = self._reference_scores(
            rows.to(self.device), interactions.to(self.device), part_scores, seed
        )
        self.train(was_training)
        self.blend_model_quantiles.copy_(quantile_grid(model_scores))
        if self.hparams.blend_mode == "row":
            self.blend_model_scale.fill_(float(model_scores.double().std()) if len(model_scores) > 1 else 1.0)
        part_grid = self.blend_ease_quantiles if blend == "ease" else self.blend_ridge_quantiles
        part_grid.copy_(quantile_grid(reference_part))
        self.blend_is_fitted.fill_(True)
        part_l2 = self.hparams.blend_ease_l2 if blend == "ease" else self.hparams.blend_ridge_l2
        logger.info(
            "fitted the %s blend (%s mode, weight %.3g, lambda %g) on %d training pairs; references from %d pairs",
            blend,
            self.hparams.blend_mode,
            self.hparams.blend_weight,
            part_l2,
            int(interactions.sum()),
            len(model_scores),
        )

    def _row_feature_blocks(self) -> list[tuple[int, int]] | None:
        """Return the ``(offset, width)`` column block of each row feature source, or None without a layout."""
        layout = (self.hparams.featurizer or {}).get("row") or []
        blocks = [(int(entry["offset"]), int(entry["width"])) for entry in layout]
        return blocks or None

    def _reference_scores(
        self, rows: Tensor, interactions: Tensor, part_scores: Any, seed: int
    ) -> tuple[Tensor, Tensor]:
        """Return the model's and the part's ``(M,)`` scores of the candidate pairs of ``rows``, sampled as in :meth:`fit_blend`."""
        n_cols = self.hparams.n_cols
        n_candidates = len(rows) * n_cols - int(interactions[rows].sum())
        keep_share = min(1.0, MAX_REFERENCE_PAIRS / max(n_candidates, 1))
        generator = torch.Generator().manual_seed(seed)
        chunk_rows = max(1, REFERENCE_CHUNK_CELLS // n_cols)
        model_parts, other_parts = [], []
        for chunk in rows.split(chunk_rows):
            keep = ~interactions[chunk]  # (n, C) candidates
            if keep_share < 1.0:
                keep = keep & (torch.rand(keep.shape, generator=generator) < keep_share).to(keep.device)
            model_parts.append(self.network_logits(chunk)[keep].float())
            other_parts.append(part_scores(chunk)[keep].float())
        return torch.cat(model_parts), torch.cat(other_parts)  # (M,), (M,)

    def _part_scores(self, rows: Tensor) -> Tensor:
        """Return the ``(N, n_cols)`` scores of the blend's baseline part for the rows ``(N,)``."""
        if self.hparams.blend == "ease":
            return self._ease_scores(rows)
        return self._ridge_feature_scores(self.row_tower.features[rows])

    def _part_pair_scores(self, rows: Tensor, cols: Tensor) -> Tensor:
        """Return the ``(P,)`` scores of the blend's baseline part for the pairs ``(rows[i], cols[i])``."""
        if self.hparams.blend == "ease":
            return self._ease_pair_scores(rows, cols)
        step = max(1, REFERENCE_CHUNK_CELLS // max(self.blend_ridge_weights.shape[0], 1))
        pieces = []
        for start in range(0, len(rows), step):
            centered = self.row_tower.features[rows[start : start + step]] - self.blend_ridge_feature_mean  # (p, d)
            weights = self.blend_ridge_weights[:, cols[start : start + step]].T  # (p, d)
            pieces.append((centered * weights).sum(dim=1) + self.blend_ridge_target_mean[cols[start : start + step]])
        return torch.cat(pieces) if pieces else torch.empty(0, device=rows.device)  # (P,)

    def _ridge_feature_scores(self, features: Tensor) -> Tensor:
        """Return the ``(N, n_cols)`` ridge scores ``(x - m) @ W + c`` of ``(N, d)`` row features."""
        centered = features.float() - self.blend_ridge_feature_mean  # (N, d)
        return centered @ self.blend_ridge_weights + self.blend_ridge_target_mean  # (N, C)

    def _ease_scores(self, rows: Tensor) -> Tensor:
        """Return the ``(N, n_cols)`` EASE scores ``X[rows] @ B`` of the rows ``(N,)``."""
        return self.blend_interactions[rows].float() @ self.blend_ease_weights  # (N, C) @ (C, C)

    def _ease_pair_scores(self, rows: Tensor, cols: Tensor) -> Tensor:
        """Return the ``(P,)`` EASE scores of the pairs, in chunks of at most ``REFERENCE_CHUNK_CELLS`` values."""
        step = max(1, REFERENCE_CHUNK_CELLS // self.hparams.n_cols)
        pieces = []
        for start in range(0, len(rows), step):
            history = self.blend_interactions[rows[start : start + step]].float()  # (p, C)
            weights = self.blend_ease_weights[:, cols[start : start + step]].T  # (p, C)
            pieces.append((history * weights).sum(dim=1))  # (p,)
        return torch.cat(pieces) if pieces else torch.empty(0, device=rows.device)  # (P,)

    # ----------------------------------------------------------------------------------
    # Training.

    def _shared_step(self, batch: dict[str, Tensor], stage: str) -> Tensor:
        if "labels" in batch:
            return self._grid_step(batch, stage)
        rows = batch["row"]
        weights = batch.get("weight")  # (B,) example weights, or None when all count the same
        if "neg" in batch:
            positive = self(rows, batch["pos"])  # (B,)
            negative = self(rows, batch["neg"])  # (B,)
            if self.hparams.loss == "margin":
                loss = losses.margin_loss(positive, negative, self.hparams.margin, weights)
            else:
                loss = losses.bpr_loss(positive, negative, weights)
            penalty_cols = torch.cat([batch["pos"], batch["neg"]])
        else:
            logits = self(rows, batch["col"])  # (B,)
            loss = losses.weighted_bce_loss(logits, batch["label"], self.hparams.pos_weight, weights)
            penalty_cols = batch["col"]
        if self.hparams.l2 > 0:
            loss = loss + self.hparams.l2 * self._penalty(rows, penalty_cols)
        loss = loss + self._encoder_penalty()
        self._record_loss(stage, loss, len(rows))
        return loss

    def _grid_step(self, batch: dict[str, Tensor], stage: str) -> Tensor:
        """Compute the BCE loss of a ``GridBatch``: rows ``(R,)`` against all columns, labels ``(R, C)``.

        The loss and the penalty equal those of the same pairs listed one by one, computed
        from one ``(R, C)`` score matrix, with the optional ``(R, C)`` example weights
        ``weights``. ID dropout draws a mask per pair, so with ``id_dropout > 0`` the pairs
        are listed and scored one by one instead.
        """
        rows, labels = batch["rows"], batch["labels"]  # (R,), (R, C)
        weights = batch.get("weights")  # (R, C) or None
        n_rows, n_cols = labels.shape
        cols = torch.arange(n_cols, device=rows.device)  # (C,)
        if self.training and self.hparams.id_dropout > 0:
            pairs = {"row": rows.repeat_interleave(n_cols), "col": cols.repeat(n_rows), "label": labels.reshape(-1)}
            if weights is not None:
                pairs["weight"] = weights.reshape(-1)  # (R * C,)
            return self._shared_step(pairs, stage)  # (R * C,) pairs in row-major order
        logits = self.network_logits(rows)  # (R, C)
        flat_weights = None if weights is None else weights.reshape(-1)  # (R * C,)
        loss = losses.weighted_bce_loss(logits.reshape(-1), labels.reshape(-1), self.hparams.pos_weight, flat_weights)
        if self.hparams.l2 > 0:
            # Every row meets every column once, so the per-pair mean is the per-entity mean.
            loss = loss + self.hparams.l2 * self._penalty(rows, cols)
        loss = loss + self._encoder_penalty()
        self._record_loss(stage, loss, labels.numel())
        return loss

    def _penalty(self, rows: Tensor, cols: Tensor) -> Tensor:
        """Return the mean squared norm of the batch's latent vectors (and biases)."""
        penalty = self.row_tower(rows).pow(2).sum(1).mean() + self.col_tower(cols).pow(2).sum(1).mean()
        if self.row_bias is not None:
            penalty = penalty + self.row_bias(rows).pow(2).mean() + self.col_bias(cols).pow(2).mean()
        return penalty

    def _encoder_penalty(self) -> Tensor | float:
        """Return the weighted sum of squared weights (not biases) of the feature encoders."""
        penalty: Tensor | float = 0.0
        sides = ((self.row_tower, self.hparams.row_feature_l2), (self.col_tower, self.hparams.col_feature_l2))
        for tower, strength in sides:
            if strength > 0 and tower.encoder is not None:
                squares = [weight.pow(2).sum() for weight in tower.encoder.parameters() if weight.dim() > 1]
                penalty = penalty + strength * torch.stack(squares).sum()
        return penalty

    def _record_loss(self, stage: str, loss: Tensor, batch_size: int) -> None:
        """Add a batch's loss to the epoch mean that is logged as ``{stage}/loss`` at the epoch's end.

        ``self.log`` in every step costs Lightning more time than a small training step
        (Lightning 2.6, CPU). So the epoch mean is kept here, without a device
        synchronization, and logged once per epoch. Batches are weighted by their size,
        as ``self.log(..., on_epoch=True, batch_size=...)`` weights them.
        """
        total, examples = self._loss_totals.get(stage, (0.0, 0))
        self._loss_totals[stage] = (total + loss.detach() * batch_size, examples + batch_size)

    def _log_epoch_loss(self, stage: str) -> None:
        total, examples = self._loss_totals.pop(stage, (0.0, 0))
        if examples > 0:
            self.log(f"{stage}/loss", total / examples, prog_bar=True)

    def on_train_start(self) -> None:
        # A run resumed from a checkpoint with a fitted blend validates the network alone
        # again; training ends with a new fit_blend (hybridmf.training.train_split).
        if self.blend_fitted:
            logger.info("training starts: the fitted blend is cleared until fit_blend runs again")
            self.blend_is_fitted.fill_(False)

    def on_train_epoch_start(self) -> None:
        self._loss_totals.pop("train", None)

    def on_train_epoch_end(self) -> None:
        self._log_epoch_loss("train")

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        optimizer = self.optimizers()
        loss = self._shared_step(batch, "train")
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()
        return loss

    def on_validation_epoch_start(self) -> None:
        self.evaluator.reset()

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        scores = self.score_rows(batch["rows"])  # (n, C)
        self.evaluator.update(
            scores.float().cpu(), batch["candidates"].cpu(), batch["positives"].cpu(), rows=batch["rows"].cpu()
        )

    def on_validation_epoch_end(self) -> None:
        # In a distributed run each process evaluated its share of the rows. After the merge,
        # every process has the metrics of all rows and logs the same values.
        merge_evaluator_across_processes(self.evaluator, self.trainer.strategy)
        metrics = {f"val/{name}": float(value) for name, value in self.evaluator.compute().items()}
        self.log("val/auroc", metrics.pop("val/auroc"), prog_bar=True)
        self.log_dict(metrics)

    def predict_step(self, batch: dict[str, Tensor] | Tensor, batch_idx: int) -> Tensor:
        """Return the ``(N, n_cols)`` :meth:`score_rows` of a batch of rows (a tensor or ``{"rows": ...}``)."""
        rows = batch["rows"] if isinstance(batch, dict) else batch
        return self.score_rows(rows)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        name = self.hparams.optimizer
        options: dict[str, Any] = {"lr": self.hparams.lr, "weight_decay": self.hparams.weight_decay}
        if name == "rmsprop":
            # Keras' RMSprop defaults, which the original prototype used.
            options.update(alpha=0.9, eps=1e-7)
        return OPTIMIZERS[name](self.parameters(), **options)
