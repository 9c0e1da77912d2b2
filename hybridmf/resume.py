"""Resumable training: random states in checkpoints, and the checkpoint to continue from.

Lightning's checkpoints hold the weights, the optimizer state and the loop progress
(epoch and step), and ``trainer.fit(..., ckpt_path=...)`` restores them. They do not hold
the global random states that dropout and ID dropout draw from, so a resumed run would
draw other masks than an uninterrupted one. ``RandomStateCheckpoint`` adds the states of
torch (CPU and CUDA), numpy and Python's ``random`` to every checkpoint, one set per
process, and restores them when training starts again.

The examples of an epoch do not depend on these states: ``EpochBatches`` derives them
from ``(seed, epoch, rank)``, and ``InteractionDataModule`` gives its DataLoaders a
generator of their own. Together this makes a resumed run repeat an uninterrupted one
exactly on the CPU, which ``tests/test_resume.py`` checks.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

logger = logging.getLogger(__name__)


def collect_random_states() -> dict[str, Any]:
    """Return the global random states of torch, CUDA, numpy and Python as tensors and tuples.

    Every value is a tensor, a number, a string or a tuple of those, so a checkpoint that
    contains them still loads with ``torch.load(..., weights_only=True)``.

    Example:
        >>> states = collect_random_states()
        >>> first = torch.rand(2)
        >>> restore_random_states(states)
        >>> torch.equal(torch.rand(2), first)
        True
    """
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gaussian),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_random_states(states: dict[str, Any]) -> None:
    """Set the global random states from ``collect_random_states()``."""
    torch.set_rng_state(states["torch"])
    kind, keys, position, has_gauss, cached_gaussian = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian))
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class RandomStateCheckpoint(pl.Callback):
    """Save the random states of every process in each checkpoint and restore them on resume.

    In a distributed run each checkpoint contains one set of states per process (gathered
    when the checkpoint is written, which every process does together), and each process
    restores its own. A checkpoint from a run with a different number of processes
    restores the states of process 0 in every process and logs a warning.

    The states are restored in ``on_train_start``, after Lightning restored the weights
    and built the dataloaders, just before the first training step.
    """

    def __init__(self) -> None:
        self._trainer: pl.Trainer | None = None
        self._pending: dict[str, Any] | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        states = collect_random_states()
        if self._trainer is not None and self._trainer.world_size > 1 and torch.distributed.is_initialized():
            per_process: list[Any] = [None] * self._trainer.world_size
            torch.distributed.all_gather_object(per_process, states)
            return {"per_process": per_process}
        return {"per_process": [states]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        per_process = state_dict["per_process"]
        rank, world_size = (0, 1) if self._trainer is None else (self._trainer.global_rank, self._trainer.world_size)
        if len(per_process) != world_size:
            logger.warning(
                "the checkpoint contains the random states of %d processes, but this run has %d, so "
                "every process continues with the states of process 0 and draws other dropout masks "
                "than the interrupted run would have drawn",
                len(per_process),
                world_size,
            )
            rank = 0
        self._pending = per_process[rank]

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._pending is not None:
            restore_random_states(self._pending)
            self._pending = None


def check_resume_path(path: str) -> Path:
    """Return the checkpoint path to resume from, after checking that it is a file.

    Raises:
        ValueError: When ``path`` is not an existing file.
    """
    checkpoint = Path(path)
    if not checkpoint.is_file():
        raise ValueError(
            f"--resume {path!r}: no such checkpoint file; pass a .ckpt written by scripts/fit.py, "
            f"for example runs/<run>/checkpoints/last.ckpt"
        )
    return checkpoint


def _plain(value: Any) -> Any:
    """Return tuples as lists, recursively, so stored and current hyperparameters compare equal."""
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def check_resume_compatible(path: str | Path, model: pl.LightningModule) -> None:
    """Check that the checkpoint ``path`` contains the parameters of ``model``, before training resumes.

    A run resumes with the model options of the run that wrote the checkpoint. Other
    options (a different ``k``, other features, another head) give parameters of other
    shapes, which Lightning would report as a size mismatch deep in ``load_state_dict``.

    Raises:
        ValueError: When a parameter or buffer is missing on either side or has another
            shape, or a blend option (``BLEND_OPTIONS``) differs. The message names the
            model options that differ.
    """
    stored = torch.load(path, map_location="cpu", weights_only=True)
    state = stored.get("state_dict", {})
    current = model.state_dict()
    mismatched = sorted(
        [name for name, value in current.items() if name not in state or state[name].shape != value.shape]
        + [name for name in state if name not in current]
    )
    stored_options = stored.get("hyper_parameters", {})
    if not mismatched:
        _check_same_blend(path, stored_options, model.hparams)
        return
    differing = _differing_options(stored_options, model.hparams, list(model.hparams))
    shown_names = ", ".join(mismatched[:3]) + (f" and {len(mismatched) - 3} more" if len(mismatched) > 3 else "")
    raise ValueError(
        f"--resume {str(path)!r}: the checkpoint was written with other model options "
        f"({'; '.join(differing) if differing else 'parameters ' + shown_names + ' differ'}), so its weights do not fit "
        f"this model. Resume with the options of that run (its config.json), or start a new run without --resume"
    )


# Options of the blend that a checkpoint stores without any parameter shape showing them.
BLEND_OPTIONS = ("blend_mode", "blend_weight", "blend_ease_l2", "blend_ridge_l2")


def _check_same_blend(path: str | Path, stored_options: dict[str, Any], options: dict[str, Any]) -> None:
    """Reject a resume whose blend options differ from the checkpoint's.

    A resumed run that trains no further epoch keeps the checkpoint's blend options, and
    one that does uses the new ones, so a change would apply or not by chance. Without a
    blend these options do nothing, so they are not compared.
    """
    if options.get("blend", "none") == "none":
        return
    differing = _differing_options(stored_options, options, BLEND_OPTIONS)
    if differing:
        raise ValueError(
            f"--resume {str(path)!r}: the checkpoint was written with other blend options ({'; '.join(differing)}). "
            f"Resume with the blend options of that run (its config.json), or start a new run without --resume"
        )


def _differing_options(stored_options: dict[str, Any], options: dict[str, Any], names: Sequence[str]) -> list[str]:
    """Describe each of ``names`` whose value in ``options`` differs from the checkpoint's, as "name: old, new"."""
    return [
        f"{name}: {_plain(stored_options[name])!r} in the checkpoint, {_plain(options[name])!r} now"
        for name in names
        if name in stored_options and name in options and _plain(stored_options[name]) != _plain(options[name])
    ]


def keep_previous_log(out_dir: Path) -> Path | None:
    """Rename the CSV log of an earlier run in ``out_dir`` so the resumed run does not delete it.

    Lightning's ``CSVLogger`` deletes ``logs/metrics.csv`` when it starts in a folder that
    has one. The earlier file becomes ``logs/metrics-before-resume-<n>.csv``.

    Returns:
        The new path of the earlier log, or None when there was none.
    """
    log = out_dir / "logs" / "metrics.csv"
    if not log.is_file():
        return None
    number = 1
    while (target := log.with_name(f"metrics-before-resume-{number}.csv")).exists():
        number += 1
    log.rename(target)
    logger.info("kept the log of the interrupted run as %s", target)
    return target
