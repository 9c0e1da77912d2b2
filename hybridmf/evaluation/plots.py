"""Figures of a cross-validation run: training curves, ROC and precision-recall curves, precision@k.

Figures are drawn with matplotlib's object-oriented API on the Agg canvas, so nothing here
needs a display or changes pyplot's global backend. Every file is written atomically.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from hybridmf.data.io import write_atomic

logger = logging.getLogger(__name__)

__all__ = ["plot_precision_at_k", "plot_roc_pr", "plot_training_curves", "read_training_log"]

# Points kept per curve. A pooled ROC curve on MEF has one point per distinct score, up to 0.6 M.
MAX_CURVE_POINTS = 2000
DPI = 100
MODEL_STYLE = {"color": "black", "linewidth": 2.0, "zorder": 3}


def _save(figure: Figure, path: Path) -> Path:
    """Write ``figure`` as a PNG file at ``path`` through a temporary file."""
    FigureCanvasAgg(figure)
    figure.tight_layout()
    return write_atomic(path, lambda temporary: figure.savefig(temporary, format="png", dpi=DPI))


def _style(method: str, index: int) -> dict[str, object]:
    """Return line options: the model in thick black, baselines in the tab10 colours."""
    if method == "model":
        return dict(MODEL_STYLE)
    return {"color": f"C{index % 10}", "linewidth": 1.3}


def _thin(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Keep at most ``MAX_CURVE_POINTS`` evenly spaced points of each array, first and last included."""
    n_points = len(arrays[0])
    if n_points <= MAX_CURVE_POINTS:
        return arrays
    keep = np.unique(np.linspace(0, n_points - 1, MAX_CURVE_POINTS).round().astype(np.int64))
    return tuple(array[keep] for array in arrays)


def read_training_log(path: str | Path) -> pd.DataFrame:
    """Read a Lightning ``CSVLogger`` file into one line per epoch.

    Lightning writes training and validation values on separate lines of the same epoch,
    and this function merges them.

    Args:
        path: The ``metrics.csv`` file.

    Returns:
        A data frame indexed by the 1-based ``epoch``, with the logged columns such as
        ``train/loss`` and ``val/auroc``, without ``step``.

    Raises:
        ValueError: If the file has no ``epoch`` column.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "metrics.csv"
        >>> _ = path.write_text("epoch,step,train/loss,val/auroc\\n0,9,,0.7\\n0,9,0.5,\\n1,19,,0.8\\n1,19,0.4,\\n")
        >>> read_training_log(path).to_dict("list")
        {'train/loss': [0.5, 0.4], 'val/auroc': [0.7, 0.8]}
    """
    table = pd.read_csv(path)
    if "epoch" not in table.columns:
        raise ValueError(f"{path}: a Lightning metrics.csv needs an 'epoch' column, found {list(table.columns)}")
    table = table.drop(columns=["step"], errors="ignore").groupby("epoch").first()
    table.index = table.index.astype(int) + 1
    return table


def plot_training_curves(logs: Sequence[str | Path], path: str | Path) -> Path:
    """Plot the training loss and the validation AUROC per epoch, one line per fold.

    Args:
        logs: The Lightning ``metrics.csv`` of each fold, in fold order.
        path: The PNG file to write.

    Returns:
        ``path``.
    """
    figure = Figure(figsize=(10, 3.8))
    loss_axes, auroc_axes = figure.subplots(1, 2)
    has_validation = False
    for fold, log in enumerate(logs):
        table = read_training_log(log)
        if "train/loss" in table.columns:
            loss = table["train/loss"].dropna()
            loss_axes.plot(loss.index, loss.to_numpy(), marker=".", label=f"fold {fold}")
        if "val/auroc" in table.columns:
            auroc = table["val/auroc"].dropna()
            auroc_axes.plot(auroc.index, auroc.to_numpy(), marker=".", label=f"fold {fold}")
            has_validation = has_validation or len(auroc) > 0
    loss_axes.set(xlabel="epoch", ylabel="training loss", title="Training loss")
    auroc_axes.set(xlabel="epoch", ylabel="AUROC", title="Inner validation AUROC")
    if not has_validation:
        auroc_axes.text(0.5, 0.5, "no inner validation (val_fraction 0)", ha="center", va="center",
                        transform=auroc_axes.transAxes)
    for axes in (loss_axes, auroc_axes):
        axes.grid(alpha=0.3)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize="small")
    return _save(figure, Path(path))


def plot_roc_pr(
    curves: Mapping[str, Mapping[str, np.ndarray]],
    path: str | Path,
    labels: Mapping[str, str] | None = None,
    title: str = "",
) -> Path:
    """Plot the pooled ROC and precision-recall curves of every method side by side.

    Args:
        curves: Per method, the arrays ``fpr``, ``tpr``, ``precision`` and ``recall`` of
            :meth:`hybridmf.evaluation.metrics.RankingEvaluator.pooled_curves`.
        path: The PNG file to write.
        labels: Legend text per method. A method without one is labelled by its name.
        title: Title above both panels.

    Returns:
        ``path``.
    """
    labels = labels or {}
    figure = Figure(figsize=(10, 4.2))
    roc_axes, pr_axes = figure.subplots(1, 2)
    for index, (method, curve) in enumerate(curves.items()):
        style = _style(method, index)
        label = labels.get(method, method)
        fpr, tpr = _thin(curve["fpr"], curve["tpr"])
        recall, precision = _thin(curve["recall"], curve["precision"])
        roc_axes.plot(fpr, tpr, label=label, **style)
        # Average precision is a step function: precision[i] holds for recall down to
        # recall[i + 1]. A straight line would draw a constant scorer's two points as a
        # diagonal from precision 1 down to the base rate.
        pr_axes.plot(recall, precision, label=label, drawstyle="steps-post", **style)
    roc_axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    roc_axes.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (pooled)",
                 xlim=(0, 1), ylim=(0, 1.01))
    pr_axes.set(xlabel="recall", ylabel="precision", title="Precision-recall (pooled)", xlim=(0, 1), ylim=(0, 1.01))
    for axes in (roc_axes, pr_axes):
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small", loc="lower right" if axes is roc_axes else "upper right")
    if title:
        figure.suptitle(title)
    return _save(figure, Path(path))


def plot_precision_at_k(precision_at_k: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """Plot the mean precision@k over folds against k, with the standard deviation as error bars.

    Args:
        precision_at_k: Columns ``method``, ``fold``, ``k``, ``precision``.
        path: The PNG file to write.
        title: Title of the plot.

    Returns:
        ``path``.
    """
    figure = Figure(figsize=(6, 4.2))
    axes = figure.subplots()
    methods = list(dict.fromkeys(precision_at_k["method"]))
    for index, method in enumerate(methods):
        by_k = precision_at_k[precision_at_k["method"] == method].groupby("k")["precision"]
        mean, spread = by_k.mean(), by_k.std(ddof=1).fillna(0.0)
        style = _style(method, index)
        axes.errorbar(mean.index, mean.to_numpy(), yerr=spread.to_numpy(), marker="o", markersize=3,
                      capsize=2, label=method, **style)
    axes.set_xscale("log")
    ks = sorted(precision_at_k["k"].unique())
    axes.set_xticks(ks, [str(k) for k in ks])
    axes.set(xlabel="k (columns ranked per row)", ylabel="precision@k", title=title or "Precision@k")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    return _save(figure, Path(path))
