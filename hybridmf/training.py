"""One training run from a ``FitConfig``: data, split, model, Lightning trainer, metrics.

``run_fit`` is what ``scripts/fit.py`` calls; the pieces (``load_data``, ``build_model``,
``build_trainer``, ``train_split``, ``evaluate_scorer``) are reused by cross-validation
(``hybridmf.evaluation.protocols``) and tuning.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint, TQDMProgressBar
from pytorch_lightning.loggers import CSVLogger

from hybridmf.config import FitConfig
from hybridmf.data.datamodule import InteractionDataModule, RowChunks
from hybridmf.data.features import FeatureMatrix, assemble_features, load_mef_features, make_featurizer
from hybridmf.data.files import load_interaction_files
from hybridmf.data.fingerprints import morgan_fingerprints
from hybridmf.data.interactions import InteractionData
from hybridmf.data.io import write_atomic
from hybridmf.data.mef import MEFSource, load_mef
from hybridmf.data.sampling import PositiveSet
from hybridmf.data.splits import Split, make_split
from hybridmf.evaluation.baselines import Popularity
from hybridmf.evaluation.metrics import RankingEvaluator
from hybridmf.model.module import HybridMF
from hybridmf.resume import RandomStateCheckpoint, check_resume_compatible, check_resume_path, keep_previous_log

logger = logging.getLogger(__name__)

# Keys of metrics.json that come from the evaluator, in the order of the printed table.
REPORTED_METRICS = ("auroc", "aupr", "accuracy", "ndcg@{k}", "hr@{k}", "precision@{k}", "recall@{k}", "mrr")


# Recorded in metrics.json when held-out drugs can be ranked only by ADR popularity.
COLD_WITHOUT_ROW_FEATURES = (
    "cold split without drug features: the held-out drugs have no trained embedding and no "
    "features, so the model can at best rank ADRs by popularity (with --bias). Use --features "
    "fingerprints, drug or all to score new drugs"
)


# Training steps between redraws of the progress bar. Lightning redraws after every step by
# default. Redrawing every 20 steps made the batch-2000 epoch of scripts/fit.py on MEF
# about a tenth shorter (CPU, Lightning 2.6). The last step of an epoch is always drawn.
PROGRESS_REFRESH_STEPS = 20


# Options that apply only together with --interactions.
OWN_DATA_OPTIONS = ("rows", "cols", "weight_column", "row_feature_files", "col_feature_files")


def load_data(config: FitConfig) -> InteractionData:
    """Load your own files when ``config.interactions`` is set, else the data set ``config.dataset``.

    The MEF data set comes with the feature sources that ``config.feature_sources()``
    selects; your own files come with the tables of ``row_feature_files`` and
    ``col_feature_files``.

    Raises:
        ValueError: When an option of your own files is set without ``interactions``, or
            MEF feature sources are selected together with ``interactions``.
    """
    if config.interactions is None:
        options_set = [name for name in OWN_DATA_OPTIONS if getattr(config, name) not in (None, (), [])]
        if options_set:
            flags = ", ".join("--" + name.replace("_", "-") for name in options_set)
            raise ValueError(
                f"{flags} need(s) --interactions FILE; without it the data set "
                f"--dataset {config.dataset} is loaded, which has its own files"
            )
        data = load_mef(config.data_dir)
        add_mef_features(config, data)
        return data

    drug_sources, adr_sources = config.feature_sources()
    mef_only = [name for name in drug_sources + adr_sources if name != "fingerprint"]
    if mef_only:
        raise ValueError(
            f"the MEF feature sources {mef_only} (from --features, --drug-sources or --adr-sources) need the "
            f"MEF files, which --interactions data does not have. Give your own feature tables with "
            f"--row-feature-files / --col-feature-files instead; only the fingerprint source (--features "
            f"fingerprints) works with your own data, from the 'smiles' column of --rows"
        )
    data = load_interaction_files(
        config.interactions,
        rows=config.rows,
        cols=config.cols,
        row_id_column=config.row_id_column,
        col_id_column=config.col_id_column,
        weight_column=config.weight_column,
        allow_unknown_ids=config.allow_unknown_ids,
        row_feature_files=config.row_feature_files,
        col_feature_files=config.col_feature_files,
        missing_features=config.missing_features,
    )
    if "fingerprint" in drug_sources:
        add_smiles_fingerprints(config, data)
    return data


def add_smiles_fingerprints(config: FitConfig, data: InteractionData) -> None:
    """Add Morgan fingerprints of the rows' ``smiles`` column as the first row feature source.

    A missing or unparsable SMILES gets zero bits and ``fingerprint_missing = 1``, with a
    logged warning, as for MEF.

    Raises:
        ValueError: When the row table has no ``smiles`` column.
    """
    if "smiles" not in data.rows.columns:
        where = f"the --rows table {config.rows}" if config.rows else "the rows (no --rows table was given)"
        raise ValueError(
            f"--features fingerprints computes fingerprints from a 'smiles' column, but {where} has none; add "
            f"an id,name,smiles table with --rows, or give precomputed features with --row-feature-files"
        )
    smiles = pd.Series(data.rows["smiles"].to_numpy(dtype=object), index=data.rows["id"].to_numpy())
    fingerprints = morgan_fingerprints(smiles, radius=config.fingerprint_radius, n_bits=config.fingerprint_bits)
    own_tables = dict(data.row_features)
    data.row_features.clear()
    data.row_features.update({"fingerprint": fingerprints, **own_tables})


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
    sides = (("--no-row-ids", config.row_ids, row_features), ("--no-col-ids", config.col_ids, col_features))
    for option, use_ids, matrix in sides:
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
        row_feature_l2=config.row_feature_l2,
        col_feature_l2=config.col_feature_l2,
        optimizer=config.optimizer,
        lr=config.lr,
        weight_decay=config.weight_decay,
        eval_k=config.eval_k,
        eval_pooled_sample=config.eval_pooled_sample,
        blend=config.blend,
        blend_weight=config.blend_weight,
        blend_ease_l2=config.blend_ease_l2,
        blend_ridge_l2=config.blend_ridge_l2,
        blend_mode=config.blend_mode,
        featurizer=make_featurizer(row_features, col_features, config.fingerprint_radius, config.fingerprint_bits),
    )
    model.set_features(
        row_features=torch.from_numpy(row_features.values) if row_features.dim > 0 else None,
        col_features=torch.from_numpy(col_features.values) if col_features.dim > 0 else None,
    )
    model.set_trained_entities(*trained_entities(config, data, split))
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


def build_datamodule(config: FitConfig, data: InteractionData, split: Split) -> InteractionDataModule:
    """Build the data module: the full grid, sampled negatives or triplets, as configured."""
    triplets = config.loss == "triplet"
    if triplets:
        logger.info(
            "%s loss on triplets: %d %s negative(s) per training positive, redrawn every epoch; "
            "--negatives %s applies to the BCE loss only",
            config.triplet,
            config.neg_ratio,
            config.neg_sampling,
            config.negatives,
        )
    return InteractionDataModule(
        data,
        split,
        batch_size=config.batch_size,
        seed=config.seed,
        negatives=config.negatives,
        neg_ratio=config.neg_ratio,
        neg_sampling=config.neg_sampling,
        triplets=triplets,
    )


def trained_entities(config: FitConfig, data: InteractionData, split: Split) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the rows and the columns that appear in training examples.

    The model zeroes the ID embedding of every other entity, which never gets a gradient.
    On the full grid every row that training may use appears, with or without training
    positives. Every column appears in the grid or can be drawn as a sampled negative. A
    column without training positives is therefore trained, towards low scores. Zeroing it
    would give it the neutral score of the output bias instead, and in warm
    cross-validation on MEF such columns then filled the top of every row.

    Returns:
        ``(R_trained,)`` and ``(C_trained,)`` int64 indices.
    """
    if config.negatives == "full":
        rows = split.train_rows(data.n_rows)
    else:
        rows = np.unique(split.train_pairs[:, 0])
    return torch.as_tensor(rows, dtype=torch.int64), torch.arange(data.n_cols)


def model_loss(config: FitConfig) -> str:
    """Return the model's loss name: ``"bce"``, or the triplet loss ``"bpr"`` / ``"margin"``."""
    return config.triplet if config.loss == "triplet" else "bce"


class RunCheckpoint(ModelCheckpoint):
    """A ``ModelCheckpoint`` that keeps a resumed run inside its own folder after the folder was copied or moved.

    Lightning 2.6 restores only ``best_model_path`` when the checkpoint folder differs
    from the stored one, and keeps it pointing into the old folder. This class instead
    maps every stored file path to the file of the same name in this run's folder, or
    drops it where that file does not exist. So the run neither writes into nor reads
    from the old folder, and ``last.ckpt`` is overwritten instead of getting a
    ``last-v1.ckpt`` beside it.
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("dirpath", self.dirpath) == self.dirpath:
            super().load_state_dict(state_dict)
            return
        folder = Path(self.dirpath)

        def relocate(path: str) -> str:
            """Return the file of the same name in this run's folder, or "" where there is none."""
            if not path:
                return ""
            candidate = folder / Path(path).name
            return str(candidate) if candidate.is_file() else ""

        best_k_models = {relocate(path): score for path, score in state_dict.get("best_k_models", {}).items()}
        moved = {
            **state_dict,
            "dirpath": self.dirpath,
            "best_model_path": relocate(state_dict.get("best_model_path", "")),
            "kth_best_model_path": relocate(state_dict.get("kth_best_model_path", "")),
            "last_model_path": relocate(state_dict.get("last_model_path", "")),
            "best_k_models": {path: score for path, score in best_k_models.items() if path},
        }
        # Only the main callback (the one with save_last) logs this at INFO, so it appears once.
        log = logger.info if self.save_last else logger.debug
        log(
            "the checkpoint folder %s differs from the stored one, %s; the stored checkpoint paths now point into %s",
            self.dirpath,
            state_dict.get("dirpath"),
            self.dirpath,
        )
        stored_best = state_dict.get("best_model_path", "")
        if stored_best and not moved["best_model_path"]:
            logger.warning(
                "the best checkpoint %s is not in %s, so the best epoch before the resume is lost. With "
                "--select-epoch best the resumed run keeps the best of the epochs it trains now, or the last one",
                Path(stored_best).name,
                self.dirpath,
            )
        super().load_state_dict(moved)


def build_trainer(config: FitConfig, out_dir: Path, monitor: bool) -> tuple[pl.Trainer, RunCheckpoint]:
    """Build the Lightning trainer that keeps the best checkpoint by validation AUROC and the last one.

    With ``monitor`` and ``config.patience`` set, training also stops after ``patience``
    epochs without a better validation AUROC.

    ``checkpoints/last.ckpt`` is written every ``checkpoint_interval(config)`` epochs (after
    every epoch by default) and, with ``config.checkpoint_every_n_steps``, also every that
    many training steps, so a run that is killed loses at most the steps since then. Every checkpoint also contains the
    random states (``RandomStateCheckpoint``), so ``--resume`` repeats the interrupted
    run exactly on the CPU. With ``config.progress`` the progress bar is redrawn every
    ``PROGRESS_REFRESH_STEPS`` training steps and at the end of each epoch.
    """
    callbacks: list[pl.Callback] = list(resume_callbacks(config, out_dir, monitor))
    if monitor and config.patience is not None:
        callbacks.append(EarlyStopping(monitor="val/auroc", mode="max", patience=config.patience))
    checkpoint = RunCheckpoint(
        dirpath=out_dir / "checkpoints",
        filename="best-{epoch:03d}" if monitor else "epoch-{epoch:03d}",
        monitor="val/auroc" if monitor else None,
        mode="max",
        save_top_k=1,
        save_last=True,
        auto_insert_metric_name=False,
        every_n_epochs=None if monitor else checkpoint_interval(config),
    )
    if config.progress:
        callbacks.append(TQDMProgressBar(refresh_rate=PROGRESS_REFRESH_STEPS))
    trainer = pl.Trainer(
        max_epochs=config.max_epochs,
        **hardware_options(config),
        logger=CSVLogger(save_dir=str(out_dir), name="logs", version=""),
        callbacks=[checkpoint, *callbacks],
        enable_progress_bar=config.progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        check_val_every_n_epoch=config.val_every_n_epochs,
        limit_val_batches=1.0 if monitor else 0,
        deterministic=False,
    )
    return trainer, checkpoint


def hardware_options(config: FitConfig) -> dict[str, Any]:
    """Return the Lightning Trainer arguments that place the run: accelerator, devices, strategy, nodes.

    Example:
        >>> hardware_options(FitConfig(accelerator="cpu", devices="2", strategy="ddp"))
        {'accelerator': 'cpu', 'devices': 2, 'strategy': 'ddp', 'num_nodes': 1}
    """
    return {
        "accelerator": config.accelerator,
        "devices": _parse_devices(config.devices),
        "strategy": config.strategy,
        "num_nodes": config.num_nodes,
    }


def resume_callbacks(config: FitConfig, out_dir: Path, monitor: bool) -> list[pl.Callback]:
    """Return the callbacks that make a run resumable.

    They store the random states in every checkpoint and keep ``checkpoints/last.ckpt`` at
    the latest epoch end and, with ``config.checkpoint_every_n_steps``, the latest N-th
    training step. The best-epoch callback of ``build_trainer`` writes ``last.ckpt`` only
    when the validation AUROC improves (Lightning 2.6 writes the last checkpoint only
    together with a top-k one), so with ``monitor`` a callback of its own rewrites
    ``last.ckpt`` after every epoch.
    """
    callbacks: list[pl.Callback] = [RandomStateCheckpoint()]
    directory = out_dir / "checkpoints"
    # monitor=None with save_top_k=1 and a fixed file name overwrites last.ckpt each time.
    last = dict(dirpath=directory, filename="last", monitor=None, save_top_k=1, enable_version_counter=False)
    if monitor:
        callbacks.append(RunCheckpoint(**last, every_n_epochs=checkpoint_interval(config)))
    if config.checkpoint_every_n_steps is not None:
        callbacks.append(RunCheckpoint(**last, every_n_train_steps=config.checkpoint_every_n_steps))
    return callbacks


def checkpoint_interval(config: FitConfig) -> int:
    """Return the epochs between two writes of ``last.ckpt``: a divisor of ``max_epochs``, so the last epoch is written.

    Example:
        >>> checkpoint_interval(FitConfig(checkpoint_every_n_epochs=50, max_epochs=300))
        50
        >>> checkpoint_interval(FitConfig(checkpoint_every_n_epochs=50, max_epochs=120))
        10
    """
    return math.gcd(config.checkpoint_every_n_epochs, config.max_epochs)


def output_dir(config: FitConfig) -> Path:
    """Return the output directory: ``--out``, else the run folder of ``--resume``, else a new one.

    A checkpoint at ``RUN/checkpoints/NAME.ckpt`` continues in ``RUN``.
    """
    if config.out is not None:
        return Path(config.out)
    if config.resume is not None and Path(config.resume).resolve().parent.name == "checkpoints":
        return Path(config.resume).resolve().parent.parent
    return Path("runs") / time.strftime("fit-%Y%m%d-%H%M%S")


def _parse_devices(devices: str) -> Any:
    if devices == "auto":
        return "auto"
    if devices.isdigit():
        return int(devices)
    return [int(part) for part in devices.split(",") if part]


def evaluate_scorer(
    score_rows: Callable[[torch.Tensor], torch.Tensor],
    chunks: Iterable[dict[str, torch.Tensor]],
    k: int,
    threshold: float | None,
    pooled_sample: int | None = None,
) -> dict[str, float]:
    """Evaluate any scorer of rows on chunks of rows with their candidate and positive masks.

    Args:
        score_rows: Maps ``(n,)`` row indices to ``(n, C)`` scores.
        chunks: Dicts with ``rows`` ``(n,)``, ``candidates`` and ``positives`` ``(n, C)``,
            such as the validation dataloader of ``InteractionDataModule``.
        k: Cut-off of the ranking metrics.
        threshold: Score threshold of the accuracy; None for scores that are not logits.
        pooled_sample: Estimate the pooled AUROC and AUPR on at most this many candidate
            pairs; None uses every candidate (see ``RankingEvaluator``).

    Returns:
        The evaluator's metrics.
    """
    evaluator = RankingEvaluator(k=k, threshold=threshold, pooled_sample=pooled_sample)
    update_evaluators(score_rows, chunks, [evaluator])
    return evaluator.compute()


def update_evaluators(
    score_rows: Callable[[torch.Tensor], torch.Tensor],
    chunks: Iterable[dict[str, torch.Tensor]],
    evaluators: Sequence[RankingEvaluator],
) -> None:
    """Score each chunk of rows once and add it to every evaluator.

    Args:
        score_rows: Maps ``(n,)`` row indices to ``(n, C)`` scores.
        chunks: As :func:`evaluate_scorer`.
        evaluators: Evaluators to update, for example one per cut-off k.
    """
    for batch in chunks:
        scores = score_rows(batch["rows"]).float()  # (n, C)
        for evaluator in evaluators:
            evaluator.update(scores, batch["candidates"], batch["positives"], rows=batch["rows"])


@dataclass
class TrainedModel:
    """The outcome of :func:`train_split`.

    Attributes:
        model: The selected checkpoint, loaded on the CPU in eval mode: the epoch with the
            best validation AUROC when the split holds out pairs and ``select_epoch`` is
            ``"best"``, else the last epoch.
        checkpoint: Path of the selected checkpoint.
        last_checkpoint: Path of the last epoch's checkpoint.
        epochs: Number of epochs trained, fewer than ``max_epochs`` after early stopping.
        selected_epoch: 1-based number of the selected epoch.
        trainer: The Lightning trainer after ``fit``.
        datamodule: The data module of the split.
    """

    model: HybridMF
    checkpoint: str
    last_checkpoint: str
    epochs: int
    selected_epoch: int
    trainer: pl.Trainer
    datamodule: InteractionDataModule


def train_split(
    config: FitConfig,
    data: InteractionData,
    split: Split,
    out_dir: Path,
    blend_pairs: np.ndarray | None = None,
    config_file: Path | None = None,
) -> TrainedModel:
    """Train a model on one split and load the checkpoint that validation selects.

    Checkpoints go to ``out_dir/checkpoints`` and the per-epoch log to
    ``out_dir/logs/metrics.csv``. With ``config.blend`` set, the blend is fitted on the
    selected model (:meth:`HybridMF.fit_blend`) and the selected checkpoint is rewritten
    with it, so that loading that file gives the blended model. Checkpoint selection
    itself looks at the network alone.

    Args:
        config: Model, loss, optimization and hardware options. Its split options are
            not used: ``split`` decides what is trained on and validated.
        data: The interaction data set.
        split: Training pairs, validation pairs and the rows training must not see.
        out_dir: Output directory of this run.
        blend_pairs: ``(P, 2)`` training pairs of the blend's EASE part, or None for
            ``split.train_pairs``. Cross-validation passes the whole training part of a
            fold, which includes the inner validation pairs.
        config_file: Where to write ``config`` as JSON, or None. It is written after the
            ``--resume`` check and before training, so a rejected resume leaves the
            run's earlier file as it was.

    Returns:
        The trained model and the paths and counts of the run.
    """
    monitor = split.has_validation
    datamodule = build_datamodule(config, data, split)
    model = build_model(config, data, split)
    if config.resume is not None:
        check_resume_compatible(config.resume, model)
        keep_previous_log(out_dir)
    if config_file is not None:
        text = json.dumps(config.to_dict(), indent=2) + "\n"
        write_atomic(config_file, lambda temporary: temporary.write_text(text))
    trainer, checkpoint = build_trainer(config, out_dir, monitor)
    trainer.fit(model, datamodule=datamodule, ckpt_path=config.resume)

    # A resumed run that had already finished trains no epoch. If the callback then has no
    # last checkpoint path either, the resumed file is the last one.
    last = checkpoint.last_model_path or config.resume
    if not last:
        raise RuntimeError(f"training wrote no checkpoint to {out_dir / 'checkpoints'}; check --max-epochs")
    best = checkpoint.best_model_path
    selected = best if monitor and config.select_epoch == "best" and best else last
    stored = torch.load(selected, map_location="cpu", weights_only=True)
    model = HybridMF.load_from_checkpoint(selected, map_location="cpu").eval()
    if config.blend != "none":
        pairs = split.train_pairs if blend_pairs is None else blend_pairs
        fit_blend_into_checkpoint(model, pairs, selected, stored, config.seed, trainer.global_rank == 0)
        # Every other checkpoint file of the run gets its own blend, so that no file of a
        # run that asked for a blend contains an unblended model.
        for other in dict.fromkeys(path for path in (last, best) if path):
            if Path(other).resolve() == Path(selected).resolve():
                continue
            other_stored = torch.load(other, map_location="cpu", weights_only=True)
            other_model = HybridMF.load_from_checkpoint(other, map_location="cpu").eval()
            fit_blend_into_checkpoint(other_model, pairs, other, other_stored, config.seed, trainer.global_rank == 0)
    return TrainedModel(
        model=model,
        checkpoint=str(Path(selected).resolve()),
        last_checkpoint=str(Path(last).resolve()),
        epochs=int(trainer.current_epoch),
        selected_epoch=_completed_epochs(stored),
        trainer=trainer,
        datamodule=datamodule,
    )


def _completed_epochs(stored: dict[str, Any]) -> int:
    """Return the number of epochs that the model in a loaded checkpoint has trained.

    Lightning stores the epoch in progress: a checkpoint saved at the end of epoch ``e``
    (0-based) stores ``e``, but the one saved after training ended (``on_train_end``)
    already stores ``e + 1``. The fit loop's count of started epochs is ``e + 1`` in both
    cases (Lightning 2.6), whether the save came at the end of training, of validation
    or of a training epoch.
    """
    try:
        return int(stored["loops"]["fit_loop"]["epoch_progress"]["current"]["started"])
    except (KeyError, TypeError):
        return int(stored["epoch"]) + 1


def fit_blend_into_checkpoint(
    model: HybridMF, train_pairs: np.ndarray, path: str | Path, stored: dict[str, Any], seed: int, write: bool
) -> None:
    """Fit the blend of ``model`` and, with ``write``, store its state in the checkpoint file ``path``.

    The file keeps everything else that ``stored`` (its loaded content) holds, such as the
    optimizer state and the random states, so ``--resume`` from it still works, and it is
    replaced atomically. In a distributed run every process fits the blend of its own
    copy of the model and only process 0 passes ``write``.

    Args:
        model: The loaded selected checkpoint, built with a blend.
        train_pairs: ``(P, 2)`` training pairs of the EASE part.
        path: The checkpoint file the model was loaded from.
        stored: The content of that file, as ``torch.load`` returned it.
        seed: Seed of the sample of reference pairs (see :meth:`HybridMF.fit_blend`).
        write: Whether to rewrite the file.
    """
    model.fit_blend(train_pairs, seed=seed)
    if not write:
        return
    stored["state_dict"] = {name: value.detach().cpu() for name, value in model.state_dict().items()}
    write_atomic(path, lambda temporary: torch.save(stored, temporary))
    logger.info("wrote the fitted blend into %s", path)


def run_fit(config: FitConfig) -> dict[str, Any]:
    """Train a model as configured, save checkpoints and ``metrics.json``, and return the metrics.

    With ``val_fraction == 0`` every known pair is used for training, nothing is evaluated
    on held-out data, and the last epoch is kept: this is the model to rank unknown pairs
    with once the settings were chosen by validation or cross-validation.
    """
    started = time.time()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    out_dir = output_dir(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    if config.resume is not None:
        check_resume_path(config.resume)
    else:
        earlier = sorted((out_dir / "checkpoints").glob("*.ckpt"))
        if earlier:
            raise ValueError(
                f"{out_dir} already contains checkpoints of an earlier run ({earlier[0].name}); a new run there would "
                f"overwrite or mix with them. Pass another --out, delete the folder, or continue that run with "
                f"--resume {out_dir / 'checkpoints' / 'last.ckpt'}"
            )
    pl.seed_everything(config.seed, workers=True, verbose=False)

    data = load_data(config)
    split = make_split(data.pairs, data.n_rows, config.split, config.val_fraction, config.seed)
    monitor = split.has_validation
    if not monitor:
        logger.info("val_fraction is 0: training on all %d pairs and keeping the last epoch", data.n_pairs)
    cold_without_features = monitor and config.split == "cold" and not data.row_features
    if cold_without_features:
        logger.warning(COLD_WITHOUT_ROW_FEATURES)
    run = train_split(config, data, split, out_dir, config_file=out_dir / "config.json")
    datamodule = run.datamodule
    if run.trainer.global_rank != 0:
        # Every process of a distributed run trained; process 0 evaluates and writes the results.
        return {}

    k = config.eval_k
    # Blended scores are not log-odds, so an accuracy at threshold 0 is not meaningful.
    threshold = 0.0 if config.blend == "none" else None
    if monitor:
        datamodule.setup("validate")
        with torch.no_grad():
            metrics = evaluate_scorer(
                run.model.score_rows, datamodule.val_chunks(), k, threshold, config.eval_pooled_sample
            )
        popularity = Popularity().fit(split.train_pairs, data.n_rows, data.n_cols)
        baseline = evaluate_scorer(popularity.score_rows, datamodule.val_chunks(), k, None, config.eval_pooled_sample)
        result = {name.format(k=k): metrics[name.format(k=k)] for name in REPORTED_METRICS}
        result.update({f"popularity_{name.format(k=k)}": baseline[name.format(k=k)] for name in REPORTED_METRICS if name != "accuracy"})
        result.update(
            evaluated_on="validation",
            rows_evaluated=metrics["rows_evaluated"],
            n_val_pairs=int(len(split.val_pairs)),
            checkpoint=run.checkpoint,
        )
    else:
        # Training-set figures: every pair of every row is a candidate and the training
        # positives are the ones to find. They show the fit, not the generalization.
        nothing = PositiveSet(np.empty((0, 2), dtype=np.int64), data.n_rows, data.n_cols)
        everything = PositiveSet(split.train_pairs, data.n_rows, data.n_cols)
        chunks = RowChunks(torch.arange(data.n_rows), nothing, everything, chunk_size=1024)
        with torch.no_grad():
            metrics = evaluate_scorer(run.model.score_rows, chunks, k, threshold=threshold)
        result = {f"train_{name.format(k=k)}": metrics[name.format(k=k)] for name in REPORTED_METRICS}
        result.update(
            evaluated_on="training pairs only: val_fraction is 0, so every known pair was used "
            "for training and the last epoch is kept; these figures measure the fit, not held-out accuracy",
            train_loss=float(run.trainer.callback_metrics.get("train/loss", float("nan"))),
            checkpoint=run.checkpoint,
        )
    result.update(
        epochs=run.epochs,
        selected_epoch=run.selected_epoch,
        seed=config.seed,
        split=config.split,
        features=config.features,
        row_features=[entry["source"] for entry in run.model.hparams.featurizer["row"]],
        col_features=[entry["source"] for entry in run.model.hparams.featurizer["col"]],
        row_feature_dim=int(run.model.hparams.row_feature_dim),
        col_feature_dim=int(run.model.hparams.col_feature_dim),
        loss=config.loss,
        model_loss=model_loss(config),
        blend=config.blend,
        training_examples=datamodule.mode,
        last_checkpoint=run.last_checkpoint,
        wall_seconds=round(time.time() - started, 2),
    )
    if cold_without_features:
        result["note"] = COLD_WITHOUT_ROW_FEATURES
    write_atomic(out_dir / "metrics.json", lambda path: path.write_text(json.dumps(result, indent=2) + "\n"))
    logger.info("wrote %s", out_dir / "metrics.json")
    return result
