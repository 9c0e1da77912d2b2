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
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from hybridmf import losses
from hybridmf.distributed import merge_evaluator_across_processes
from hybridmf.evaluation.metrics import RankingEvaluator
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
    ) -> None:
        super().__init__()
        if loss not in LOSS_NAMES:
            raise ValueError(f"loss must be one of {LOSS_NAMES}, got {loss!r}")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {optimizer!r}")
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
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

    def score_rows(self, rows: Tensor) -> Tensor:
        """Return the ``(N, n_cols)`` logits of every column for the rows ``(N,)``."""
        cols = self.col_tower.all()  # (C, k)
        scores = self.head.score_matrix(self.row_tower(rows), cols)  # (N, C)
        if self.row_bias is not None:
            scores = scores + self.row_bias(rows) + self.col_bias.weight.T  # (N, 1) + (1, C)
        return scores

    def score_new_rows(self, features: Tensor) -> Tensor:
        """Return the ``(N, n_cols)`` logits of new rows from their ``(N, d_row)`` features.

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
        return scores

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
        logits = self.score_rows(rows)  # (R, C)
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
        """Return the ``(N, n_cols)`` logits of a batch of rows (a tensor or ``{"rows": ...}``)."""
        rows = batch["rows"] if isinstance(batch, dict) else batch
        return self.score_rows(rows)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        name = self.hparams.optimizer
        options: dict[str, Any] = {"lr": self.hparams.lr, "weight_decay": self.hparams.weight_decay}
        if name == "rmsprop":
            # Keras' RMSprop defaults, which the original prototype used.
            options.update(alpha=0.9, eps=1e-7)
        return OPTIMIZERS[name](self.parameters(), **options)
