"""Lightning data module that serves whole batches built from index tensors.

Training examples of one epoch are built at the start of the epoch as a few flat tensors,
and a batch is a slice of them: there is no per-example ``__getitem__`` and no collation.
Each process of a distributed run builds only its own shard of the epoch, seeded by
``(seed, epoch, rank)``, so processes see different pairs and draw different negatives.

Validation batches are chunks of evaluated rows, each with its dense ``(rows, columns)``
candidate and positive masks, so memory is bounded by the chunk size.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from hybridmf.data.interactions import InteractionData
from hybridmf.data.sampling import PositiveSet
from hybridmf.data.splits import Split

logger = logging.getLogger(__name__)

NEGATIVE_MODES = ("full", "sampled")


class EpochBatches(Dataset):
    """The batches of one training epoch; item ``i`` is the ``i``-th batch as a dict of tensors.

    Args:
        positives: Training positives.
        rows: ``(R_train,)`` rows that training may use; the grid is ``rows × columns``.
        batch_size: Examples per batch.
        seed: Base seed; epoch ``e`` of process ``r`` uses a generator seeded from ``(seed, e, r)``.
        mode: ``"full"`` (every pair of the grid, labelled) or ``"sampled"`` / ``"triplet"``.
        rank: Index of this process.
        world_size: Number of processes; each builds ``1 / world_size`` of the epoch.
    """

    def __init__(
        self,
        positives: PositiveSet,
        rows: Tensor,
        batch_size: int,
        seed: int,
        mode: str = "full",
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.positives = positives
        self.rows = rows
        self.batch_size = batch_size
        self.seed = seed
        self.mode = mode
        self.rank = rank
        self.world_size = world_size
        self.epoch: int | None = None
        self.tensors: dict[str, Tensor] = {}
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Build the examples of ``epoch`` unless they are already built."""
        if epoch == self.epoch:
            return
        self.tensors = self._build(epoch)
        self.epoch = epoch

    def _build(self, epoch: int) -> dict[str, Tensor]:
        n_cols = self.positives.n_cols
        # The permutation is shared by all processes (seeded without the rank), and each
        # process keeps every world_size-th element of it, so the shards are disjoint.
        shared = torch.Generator().manual_seed(derive_seed(self.seed, epoch))
        cells = torch.randperm(len(self.rows) * n_cols, generator=shared)[self.rank :: self.world_size]
        rows, cols = self.rows[cells // n_cols], cells % n_cols  # (N,), (N,)
        labels = self.positives.contains(rows, cols).to(torch.float32)  # (N,)
        return {"row": rows, "col": cols, "label": labels}

    def __len__(self) -> int:
        return math.ceil(len(next(iter(self.tensors.values()))) / self.batch_size)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"batch index {index} out of range for {len(self)} batches")
        window = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return {name: tensor[window] for name, tensor in self.tensors.items()}


def derive_seed(*values: int) -> int:
    """Mix integers into one 63-bit seed, the same in every process and Python session.

    Example:
        >>> derive_seed(0, 1) == derive_seed(0, 1) != derive_seed(0, 2)
        True
    """
    state = np.random.SeedSequence([int(value) for value in values]).generate_state(1, np.uint64)
    return int(state[0] >> np.uint64(1))


class RowChunks(Dataset):
    """Evaluated rows in chunks, each with its candidate and positive masks.

    Args:
        rows: ``(R_val,)`` int64 rows to evaluate.
        train: Training positives (excluded from the candidates).
        held_out: Held-out positives (the ones to find).
        chunk_size: Rows per chunk.
    """

    def __init__(self, rows: Tensor, train: PositiveSet, held_out: PositiveSet, chunk_size: int) -> None:
        self.rows = rows
        self.train = train
        self.held_out = held_out
        self.chunk_size = chunk_size

    def __len__(self) -> int:
        return math.ceil(len(self.rows) / self.chunk_size)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"chunk index {index} out of range for {len(self)} chunks")
        rows = self.rows[index * self.chunk_size : (index + 1) * self.chunk_size]  # (n,)
        candidates = ~self.train.dense_rows(rows)  # (n, C)
        positives = self.held_out.dense_rows(rows)  # (n, C)
        return {"rows": rows, "candidates": candidates, "positives": positives}


class _EpochSampler(DistributedSampler):
    """Iterates over all items of the dataset in order and forwards ``set_epoch`` to it.

    It subclasses ``DistributedSampler`` so that Lightning keeps it in distributed runs
    instead of inserting its own sampler: sharding already happens inside the dataset.
    """

    def __init__(self, dataset: Dataset) -> None:
        super().__init__(dataset, num_replicas=1, rank=0, shuffle=False)

    def __iter__(self):
        return iter(range(len(self.dataset)))

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)


class InteractionDataModule(pl.LightningDataModule):
    """Training batches and validation chunks for one split of an interaction data set.

    Args:
        data: The interaction data set.
        split: Training and held-out pairs.
        batch_size: Training examples per batch.
        seed: Seed of the epoch shuffles and negative draws.
        negatives: ``"full"`` trains on every pair of the grid (training positives labelled
            1, all other pairs 0).
        eval_chunk_rows: Rows per validation chunk; memory is ``eval_chunk_rows × columns``.

    Example:
        >>> import numpy as np, pandas as pd
        >>> from hybridmf.data.splits import make_split
        >>> data = InteractionData(
        ...     rows=pd.DataFrame({"id": ["r0", "r1"], "name": ["a", "b"]}),
        ...     cols=pd.DataFrame({"id": ["c0", "c1", "c2"], "name": ["x", "y", "z"]}),
        ...     pairs=np.array([[0, 0], [1, 2]]))
        >>> module = InteractionDataModule(data, make_split(data.pairs, 2, val_fraction=0), batch_size=4)
        >>> module.setup("fit")
        >>> [len(batch["row"]) for batch in module.train_dataloader()]
        [4, 2]
    """

    def __init__(
        self,
        data: InteractionData,
        split: Split,
        batch_size: int = 2000,
        seed: int = 0,
        negatives: str = "full",
        eval_chunk_rows: int = 1024,
    ) -> None:
        super().__init__()
        if negatives not in NEGATIVE_MODES[:1]:
            raise ValueError(f"negatives must be one of {NEGATIVE_MODES[:1]}, got {negatives!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.data = data
        self.split = split
        self.batch_size = batch_size
        self.seed = seed
        self.negatives = negatives
        self.eval_chunk_rows = eval_chunk_rows
        self.train_positives: PositiveSet | None = None
        self.val_positives: PositiveSet | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_positives is None:
            self.train_positives = PositiveSet(self.split.train_pairs, self.data.n_rows, self.data.n_cols)
            self.val_positives = PositiveSet(self.split.val_pairs, self.data.n_rows, self.data.n_cols)

    def _rank_and_world_size(self) -> tuple[int, int]:
        if self.trainer is None:
            return 0, 1
        return self.trainer.global_rank, self.trainer.world_size

    def train_dataloader(self) -> DataLoader:
        rank, world_size = self._rank_and_world_size()
        train_rows = torch.as_tensor(self.split.train_rows(self.data.n_rows))
        batches = EpochBatches(
            self.train_positives, train_rows, self.batch_size, self.seed, self.negatives, rank, world_size
        )
        return DataLoader(batches, batch_size=None, sampler=_EpochSampler(batches))

    def val_dataloader(self) -> DataLoader:
        rows = torch.as_tensor(self.split.val_rows, dtype=torch.int64)
        chunks = RowChunks(rows, self.train_positives, self.val_positives, self.eval_chunk_rows)
        return DataLoader(chunks, batch_size=None, sampler=_EpochSampler(chunks))
