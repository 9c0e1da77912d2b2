"""Combine the validation state of the processes of a distributed run.

In a distributed run each process evaluates its own share of the validation rows (see
``InteractionDataModule.val_chunks``). At the end of validation every process sends its
``RankingEvaluator.state()`` to all others, and each process merges the states in rank
order. All processes then hold the metrics of the full candidate set, each pair counted
once, and log the same values.

The collectives go through the Lightning strategy (``strategy.all_gather``), so they work
with gloo on CPUs and NCCL on GPUs. ``all_gather`` needs tensors of one shape on every
process, so tensors whose length differs between processes are padded to the longest
length and trimmed again after the exchange.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import Tensor

from hybridmf.evaluation.metrics import RankingEvaluator

logger = logging.getLogger(__name__)


def gather_variable_length(tensor: Tensor, all_gather: Callable[[Tensor], Tensor], device: torch.device) -> list[Tensor]:
    """Gather a tensor whose first dimension may differ between processes.

    Args:
        tensor: ``(n_r, ...)`` tensor of this process; the trailing dimensions and the
            dtype must be the same in every process.
        all_gather: Collective that maps a tensor of shape ``S`` to the ``(W, *S)`` stack
            of every process's tensor, for example ``trainer.strategy.all_gather``.
        device: Device the collective works on (``trainer.strategy.root_device``).

    Returns:
        The ``W`` tensors in rank order, on the CPU, each with its own first dimension.

    Example:
        >>> def one_process(tensor):  # what all_gather returns in a run of one process
        ...     return tensor.unsqueeze(0)
        >>> gather_variable_length(torch.tensor([3, 1, 2]), one_process, torch.device("cpu"))
        [tensor([3, 1, 2])]
    """
    is_bool = tensor.dtype == torch.bool
    # Some backends do not reduce or gather bool tensors, so they travel as uint8.
    sendable = tensor.to(torch.uint8) if is_bool else tensor
    length = torch.tensor([sendable.shape[0]], dtype=torch.int64, device=device)
    lengths = all_gather(length).reshape(-1).tolist()  # (W,)
    padded = sendable.new_zeros((max(lengths), *sendable.shape[1:]))  # (max n_r, ...)
    padded[: sendable.shape[0]] = sendable
    gathered = all_gather(padded.to(device)).cpu()  # (W, max n_r, ...)
    parts = [gathered[rank, :n] for rank, n in enumerate(lengths)]
    return [part.bool() for part in parts] if is_bool else parts


def merge_evaluator_across_processes(evaluator: RankingEvaluator, strategy) -> None:
    """Replace the evaluator's state, in every process, by the merged state of all processes.

    Every process of the run must call this at the same point, since it runs collectives.
    Nothing happens in a run of one process.

    Args:
        evaluator: This process's evaluator, updated with this process's rows only.
        strategy: The Lightning strategy of the run (``trainer.strategy``).
    """
    if strategy.world_size == 1:
        return
    state = evaluator.state()
    gathered = {
        name: gather_variable_length(tensor, strategy.all_gather, strategy.root_device) for name, tensor in state.items()
    }
    evaluator.reset()
    for rank in range(strategy.world_size):
        evaluator.merge_state({name: parts[rank] for name, parts in gathered.items()})
    logger.debug("merged the validation state of %d processes", strategy.world_size)
