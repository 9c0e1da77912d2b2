"""One training run from a ``FitConfig``: data, split, model, Lightning trainer, metrics.

``run_fit`` is what ``scripts/fit.py`` calls; the pieces (``load_data``, ``build_model``,
``build_trainer``, ``evaluate_scorer``) are reused by evaluation and tuning.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger

from hybridmf.config import FitConfig
from hybridmf.data.datamodule import InteractionDataModule, RowChunks
from hybridmf.data.features import FeatureMatrix, assemble_features, load_mef_features, make_featurizer
from hybridmf.data.interactions import InteractionData
from hybridmf.data.io import write_atomic
from hybridmf.data.mef import MEFSource, load_mef
from hybridmf.data.sampling import PositiveSet
from hybridmf.data.splits import Split, make_split
from hybridmf.evaluation.baselines import Popularity
from hybridmf.evaluation.metrics import RankingEvaluator
from hybridmf.model.module import HybridMF

logger = logging.getLogger(__name__)

# Keys of metrics.json that come from the evaluator, in the order of the printed table.
REPORTED_METRICS = ("auroc", "aupr", "accuracy", "ndcg@{k}", "hr@{k}", "precision@{k}", "recall@{k}", "mrr")


# Recorded in metrics.json when held-out drugs can be ranked only by ADR popularity.
COLD_WITHOUT_ROW_FEATURES = (
    "cold split without drug features: the held-out drugs have no trained embedding and no "
    "features, so the model can at best rank ADRs by popularity (with --bias). Use --features "
    "fingerprints, drug or all to score new drugs"
)


def load_data(config: FitConfig) -> InteractionData:
    """Load the data set named by the configuration, with the side features it selects."""
    data = load_mef(config.data_dir)
    add_mef_features(config, data)
    return data


def add_mef_features(config: FitConfig, data: InteractionData) -> None:
    """Load the MEF feature sources selected by ``config`` into ``data``.

    Drug tables go to ``data.row_features`` and ADR tables to ``data.col_features``, each
    under its source name and indexed by entity id, in the order of
    ``config.feature_sources()``.

    Raises:
        ValueError: When a label-leaking source is selected without ``allow_label_leak``.
        DataFormatError: When a MEF feature file is malformed.
        DataNotFoundError: When a MEF feature file is missing.
    """
    drug_sources, adr_sources = config.feature_sources()
    if not drug_sources and not adr_sources:
        return
    source = MEFSource(config.data_dir)
    for side, names, tables in (("drug", drug_sources, data.row_features), ("adr", adr_sources, data.col_features)):
        if names:
            tables.update(
                load_mef_features(
                    source,
                    side,
                    names,
                    fingerprint_radius=config.fingerprint_radius,
                    fingerprint_bits=config.fingerprint_bits,
                    allow_label_leak=config.allow_label_leak,
                )
            )


def build_features(config: FitConfig, data: InteractionData, split: Split) -> tuple[FeatureMatrix, FeatureMatrix]:
    """Turn the feature tables of ``data`` into one row and one column matrix.

    The tables are concatenated in the order of ``data.row_features`` and
    ``data.col_features``. Dense sources are standardized with the statistics of the
    training rows only: the held-out drugs of a cold split are left out of the fit.

    Returns:
        The row features ``(n_rows, d_row)`` and the column features ``(n_cols, d_col)``;
        a side without tables has ``d = 0``.

    Raises:
        DataFormatError: When a table cannot be aligned with the entity ids.
    """
    rows = assemble_features(
        data.row_features, data.row_ids, fit_rows=split.train_rows(data.n_rows), missing=config.missing_features
    )
    cols = assemble_features(data.col_features, data.col_ids, missing=config.missing_features)
    for side, matrix in (("row", rows), ("column", cols)):
        if matrix.dim > 0:
            logger.info(
                "%s features: %d columns from %s",
                side,
                matrix.dim,
                ", ".join(f"{entry['source']} ({entry['width']})" for entry in matrix.layout),
            )
    return rows, cols


def build_model(config: FitConfig, data: InteractionData, split: Split) -> HybridMF:
    """Build a model for ``data`` with its feature matrices and mark the entities that have training pairs.

    Raises:
        ValueError: When a side has neither ID embeddings nor features.
    """
    row_features, col_features = build_features(config, data, split)
    for option, use_ids, matrix in (("--no-row-ids", config.row_ids, row_features), ("--no-col-ids", config.col_ids, col_features)):
        if not use_ids and matrix.dim == 0:
            raise ValueError(
                f"{option} needs features on that side, but none were selected. Pass --features "
                f"(or --drug-sources / --adr-sources) with sources for that side, or drop {option}"
            )
    model = HybridMF(
        n_rows=data.n_rows,
        n_cols=data.n_cols,
        k=config.k,
        head=config.head,
        head_hidden=tuple(config.head_hidden),
        head_dropout=config.head_dropout,
        head_product=config.head_product,
        row_ids=config.row_ids,
        col_ids=config.col_ids,
        encoder_hidden=tuple(config.encoder_hidden),
        encoder_activation=config.encoder_activation,
        encoder_dropout=config.encoder_dropout,
        encoder_norm=config.encoder_norm,
        row_feature_dim=row_features.dim,
        col_feature_dim=col_features.dim,
        combine=config.combine,
        id_dropout=config.id_dropout,
        bias=config.bias,
        loss=model_loss(config),
        pos_weight=config.pos_weight,
        margin=config.margin,
        l2=config.l2,
        optimizer=config.optimizer,
        lr=config.lr,
        weight_decay=config.weight_decay,
        eval_k=config.eval_k,
        featurizer=make_featurizer(row_features, col_features, config.fingerprint_radius, config.fingerprint_bits),
    )
    model.set_features(
        row_features=torch.from_numpy(row_features.values) if row_features.dim > 0 else None,
        col_features=torch.from_numpy(col_features.values) if col_features.dim > 0 else None,
    )
    train_rows = torch.as_tensor(np.unique(split.train_pairs[:, 0]))
    train_cols = torch.as_tensor(np.unique(split.train_pairs[:, 1]))
    model.set_trained_entities(train_rows, train_cols)
    model.set_entities(
        row_ids=data.rows["id"].tolist(),
        row_names=data.rows["name"].tolist(),
        col_ids=data.cols["id"].tolist(),
        col_names=data.cols["name"].tolist(),
        known_pairs=torch.as_tensor(data.pairs),
        train_pairs=torch.as_tensor(split.train_pairs),
        dataset=data.name,
    )
    return model


def model_loss(config: FitConfig) -> str:
    """Return the model's loss name: ``"bce"``, or the triplet loss ``"bpr"`` / ``"margin"``."""
    return config.triplet if config.loss == "triplet" else "bce"


def check_supported(config: FitConfig) -> None:
    """Reject options whose value is accepted by the parser but not built yet.

    Raises:
        ValueError: Naming the option, the value and what works today.
    """
    unsupported = {
        "loss": (config.loss != "bce", "only 'bce' is built so far"),
        "negatives": (config.negatives != "full", "only 'full' is built so far"),
        "interactions": (config.interactions is not None, "reading your own files is not built yet; use --dataset mef"),
        "resume": (config.resume is not None, "resuming is not built yet"),
    }
    for option, (rejected, reason) in unsupported.items():
        if rejected:
            raise ValueError(f"--{option.replace('_', '-')} {getattr(config, option)!r} is not supported: {reason}")


def build_trainer(config: FitConfig, out_dir: Path, monitor: bool) -> tuple[pl.Trainer, ModelCheckpoint]:
    """Build the Lightning trainer that keeps the best checkpoint by validation AUROC and the last one."""
    checkpoint = ModelCheckpoint(
        dirpath=out_dir / "checkpoints",
        filename="best-{epoch:03d}" if monitor else "epoch-{epoch:03d}",
        monitor="val/auroc" if monitor else None,
        mode="max",
        save_top_k=1,
        save_last=True,
        auto_insert_metric_name=False,
    )
    trainer = pl.Trainer(
        max_epochs=config.max_epochs,
        accelerator=config.accelerator,
        devices=_parse_devices(config.devices),
        logger=CSVLogger(save_dir=str(out_dir), name="logs", version=""),
        callbacks=[checkpoint],
        enable_progress_bar=config.progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=1.0 if monitor else 0,
        deterministic=False,
    )
    return trainer, checkpoint


def _parse_devices(devices: str) -> Any:
    if devices == "auto":
        return "auto"
    if devices.isdigit():
        return int(devices)
    return [int(part) for part in devices.split(",") if part]


def evaluate_scorer(
    score_rows: Callable[[torch.Tensor], torch.Tensor], chunks: Iterable[dict[str, torch.Tensor]], k: int, threshold: float | None
) -> dict[str, float]:
    """Evaluate any scorer of rows on chunks of rows with their candidate and positive masks.

    Args:
        score_rows: Maps ``(n,)`` row indices to ``(n, C)`` scores.
        chunks: Dicts with ``rows`` ``(n,)``, ``candidates`` and ``positives`` ``(n, C)``,
            such as the validation dataloader of ``InteractionDataModule``.
        k: Cut-off of the ranking metrics.
        threshold: Score threshold of the accuracy; None for scores that are not logits.

    Returns:
        The evaluator's metrics.
    """
    evaluator = RankingEvaluator(k=k, threshold=threshold)
    for batch in chunks:
        scores = score_rows(batch["rows"]).float()  # (n, C)
        evaluator.update(scores, batch["candidates"], batch["positives"])
    return evaluator.compute()


def run_fit(config: FitConfig) -> dict[str, Any]:
    """Train a model as configured, save checkpoints and ``metrics.json``, and return the metrics.

    With ``val_fraction == 0`` every known pair is used for training, nothing is evaluated
    on held-out data, and the last epoch is kept: this is the model to rank unknown pairs
    with once the settings were chosen by validation or cross-validation.
    """
    check_supported(config)
    started = time.time()
    out_dir = Path(config.out) if config.out is not None else Path("runs") / time.strftime("fit-%Y%m%d-%H%M%S")
    out_dir.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(config.seed, workers=True, verbose=False)

    data = load_data(config)
    split = make_split(data.pairs, data.n_rows, config.split, config.val_fraction, config.seed)
    monitor = split.has_validation
    if not monitor:
        logger.info("val_fraction is 0: training on all %d pairs and keeping the last epoch", data.n_pairs)
    datamodule = InteractionDataModule(data, split, batch_size=config.batch_size, seed=config.seed, negatives=config.negatives)
    model = build_model(config, data, split)
    featurizer = model.hparams.featurizer
    cold_without_features = monitor and config.split == "cold" and model.hparams.row_feature_dim == 0
    if cold_without_features:
        logger.warning(COLD_WITHOUT_ROW_FEATURES)
    trainer, checkpoint = build_trainer(config, out_dir, monitor)
    (out_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    trainer.fit(model, datamodule=datamodule)

    k = config.eval_k
    if monitor:
        best_path = checkpoint.best_model_path
        best = HybridMF.load_from_checkpoint(best_path, map_location="cpu").eval()
        datamodule.setup("validate")
        with torch.no_grad():
            metrics = evaluate_scorer(best.score_rows, datamodule.val_dataloader(), k, threshold=0.0)
        popularity = Popularity().fit(split.train_pairs, data.n_rows, data.n_cols)
        baseline = evaluate_scorer(popularity.score_rows, datamodule.val_dataloader(), k, threshold=None)
        result = {name.format(k=k): metrics[name.format(k=k)] for name in REPORTED_METRICS}
        result.update({f"popularity_{name.format(k=k)}": baseline[name.format(k=k)] for name in REPORTED_METRICS if name != "accuracy"})
        result.update(
            evaluated_on="validation",
            rows_evaluated=metrics["rows_evaluated"],
            n_val_pairs=int(len(split.val_pairs)),
            checkpoint=str(Path(best_path).resolve()),
        )
    else:
        last_path = checkpoint.last_model_path
        last = HybridMF.load_from_checkpoint(last_path, map_location="cpu").eval()
        # Training-set figures: every pair of every row is a candidate and the training
        # positives are the ones to find. They show the fit, not the generalization.
        nothing = PositiveSet(np.empty((0, 2), dtype=np.int64), data.n_rows, data.n_cols)
        everything = PositiveSet(split.train_pairs, data.n_rows, data.n_cols)
        chunks = RowChunks(torch.arange(data.n_rows), nothing, everything, chunk_size=1024)
        with torch.no_grad():
            metrics = evaluate_scorer(last.score_rows, chunks, k, threshold=0.0)
        result = {f"train_{name.format(k=k)}": metrics[name.format(k=k)] for name in REPORTED_METRICS}
        result.update(
            evaluated_on="training pairs only: val_fraction is 0, so every known pair was used "
            "for training and the last epoch is kept; these figures measure the fit, not held-out accuracy",
            train_loss=float(trainer.callback_metrics.get("train/loss", float("nan"))),
            checkpoint=str(Path(last_path).resolve()),
        )
    result.update(
        epochs=int(trainer.current_epoch),
        seed=config.seed,
        split=config.split,
        features=config.features,
        row_features=[entry["source"] for entry in featurizer["row"]],
        col_features=[entry["source"] for entry in featurizer["col"]],
        row_feature_dim=int(model.hparams.row_feature_dim),
        col_feature_dim=int(model.hparams.col_feature_dim),
        loss=config.loss,
        last_checkpoint=str(Path(checkpoint.last_model_path).resolve()),
        wall_seconds=round(time.time() - started, 2),
    )
    if cold_without_features:
        result["note"] = COLD_WITHOUT_ROW_FEATURES
    write_atomic(out_dir / "metrics.json", lambda path: path.write_text(json.dumps(result, indent=2) + "\n"))
    logger.info("wrote %s", out_dir / "metrics.json")
    return result
