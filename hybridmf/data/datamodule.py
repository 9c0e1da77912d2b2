"""Lightning data module that serves whole batches built from index tensors.

Training examples of one epoch are built at the start of the epoch as a few flat tensors,
and a batch is a slice of them: there is no per-example ``__getitem__`` and no collation.
An epoch contains one of three kinds of examples:

- ``"full"``: every ``(row, column)`` pair of the training rows × all columns, labelled
  1 for a training positive and 0 otherwise (keys ``row``, ``col``, ``label``). This grid
  is the only training data whose memory grows with rows × columns.
- ``"sampled"``: every training positive once plus ``neg_ratio`` fresh negatives per
  positive (keys ``row``, ``col``, ``label``).
- ``"triplet"``: ``neg_ratio`` triplets per training positive, each with a fresh negative
  (keys ``row``, ``pos``, ``neg``).

The builders of ``hybridmf.data.sampling`` make these epochs. In a distributed run every
process applies the same permutation, from a generator seeded by ``(seed, epoch)`` alone,
and keeps every ``world_size``-th element of it: its share of the grid or of the positives.
The shares are disjoint, except that fewer than ``world_size`` elements are repeated so
that all shares have the same length. Each process then draws its negatives from a generator seeded by
``(seed, epoch, rank)``, so processes draw different negatives.

When the full grid fits in one batch, it is served instead as a ``GridBatch``: the
training rows with the ``(rows, columns)`` label matrix of all their columns (keys
``rows``, ``labels``), which the model scores with one matrix product.

When the training positives carry confidence weights (``InteractionData.weights``), every
batch has one more key: ``weight``, an example weight per pair or triplet, or ``weights``,
an ``(rows, columns)`` matrix for a ``GridBatch``. A known pair of weight ``w`` gets
``w``, an unknown pair 1, and a triplet the weight of its positive. The loss multiplies
each example's term by it, so a known pair weighs ``pos_weight * w`` in the BCE loss.
The weights are looked up from the ``(row, column)`` of each example after sharding, so
they stay aligned with the pairs in every process. Without weights the key is absent, and
the loss takes its unweighted path.

Validation batches are chunks of evaluated rows, each with its dense ``(rows, columns)``
candidate and positive masks, so memory is bounded by the chunk size. They are the same
for every kind of training example. In a distributed run each process evaluates every
``world_size``-th row, and the model merges the processes' results.
"""

from __future__ import annotations

import logging
import math

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from hybridmf.data.interactions import InteractionData
from hybridmf.data.sampling import (
    PositiveSet,
    _check_indices,
    _check_integer,
    full_grid_epoch,
    make_generator,
    popularity_weights,
    sampled_epoch,
    triplet_epoch,
)
from hybridmf.data.splits import Split

logger = logging.getLogger(__name__)

NEGATIVE_MODES = ("full", "sampled")
TRAINING_MODES = ("full", "sampled", "triplet")
NEGATIVE_SAMPLING = ("uniform", "popularity")
# Upper bound on the pairs of one validation chunk. The evaluator keeps about a dozen
# (rows, columns) temporaries of 8 bytes per pair, so a chunk needs about 400 MB.
EVAL_CHUNK_CELLS = 2**22


class EpochBatches(Dataset):
    """The batches of one training epoch; item ``i`` is the ``i``-th batch as a dict of tensors.

    Args:
        positives: Training positives. When they have weights, each batch also has the
            key ``weight``: ``(B,)`` float32 example weights, see the module docstring.
        rows: ``(R_train,)`` distinct rows that training may use. The full grid is
            ``rows × columns``. Every positive must lie in one of these rows.
        batch_size: Examples per batch, an integer greater than or equal to 1.
        seed: Base seed, an integer greater than or equal to 0. Epoch ``e`` shuffles with
            ``make_generator(seed, e, rank=None)`` and process ``r`` draws its negatives
            with ``make_generator(seed, e, r)``.
        mode: ``"full"``, ``"sampled"`` or ``"triplet"``, the kinds of examples listed in
            the module docstring.
        rank: Index of this process, in ``[0, world_size)``.
        world_size: Number of processes; each builds ``1 / world_size`` of the epoch.
        neg_ratio: Negatives per positive in the sampled and triplet modes, an integer
            greater than or equal to 1.
        column_weights: ``(C,)`` sampling weights of the negative columns, for example
            from ``popularity_weights``; uniform when None.

    Raises:
        ValueError: When ``mode`` is unknown, a count is out of range, ``rank`` does not
            lie in ``[0, world_size)`` or a positive lies outside ``rows``.

    Example:
        >>> import numpy as np
        >>> positives = PositiveSet(np.array([[0, 0], [0, 2], [1, 1]]), n_rows=3, n_cols=4)
        >>> batches = EpochBatches(positives, torch.tensor([0, 1]), batch_size=4, seed=0, mode="triplet", neg_ratio=2)
        >>> len(batches), sorted(batches[0])
        (2, ['neg', 'pos', 'row'])
        >>> batches[1]["row"].shape  # 3 positives × 2 negatives = 6 triplets, batches of 4
        torch.Size([2])
    """

    # Device of the examples, which ``to`` changes.
    device = torch.device("cpu")

    def __init__(
        self,
        positives: PositiveSet,
        rows: Tensor,
        batch_size: int,
        seed: int,
        mode: str = "full",
        rank: int = 0,
        world_size: int = 1,
        neg_ratio: int = 4,
        column_weights: Tensor | None = None,
    ) -> None:
        if mode not in TRAINING_MODES:
            raise ValueError(f"mode must be one of {TRAINING_MODES}, got {mode!r}")
        for name, value, minimum in (
            ("batch_size", batch_size, 1),
            ("seed", seed, 0),
            ("world_size", world_size, 1),
            ("neg_ratio", neg_ratio, 1),
        ):
            _check_integer(name, value, minimum)
        _check_integer("rank", rank, 0)
        if rank >= world_size:
            raise ValueError(f"rank must lie in [0, world_size) = [0, {world_size}), got {rank}")
        rows = _check_indices("rows", torch.as_tensor(rows), positives.n_rows)
        _check_positives_in_rows(positives, rows)
        self.positives = positives
        self.rows = rows
        self.batch_size = batch_size
        self.seed = seed
        self.mode = mode
        self.rank = rank
        self.world_size = world_size
        self.neg_ratio = neg_ratio
        self.column_weights = column_weights
        self.epoch: int | None = None
        self.tensors: dict[str, Tensor] = {}
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Build the examples of ``epoch`` unless they are already built."""
        if epoch == self.epoch:
            return
        self.tensors = {name: tensor.to(self.device) for name, tensor in self._build(epoch).items()}
        self.epoch = epoch

    def to(self, device: torch.device | str) -> EpochBatches:
        """Move the examples to ``device`` and build later epochs there, one copy per epoch.

        A batch is then a slice of tensors already on the device, so training makes no
        host-to-device copy per step.

        Returns:
            This object.
        """
        self.device = torch.device(device)
        self.tensors = {name: tensor.to(self.device) for name, tensor in self.tensors.items()}
        return self

    def _build(self, epoch: int) -> dict[str, Tensor]:
        tensors = self._build_examples(epoch)
        if self.positives.weights is not None:
            tensors["weight"] = self._example_weights(tensors)
        return tensors

    def _example_weights(self, tensors: dict[str, Tensor]) -> Tensor:
        """Return the ``(N,)`` float32 weight of each example: its positive's weight, or 1."""
        if "pos" in tensors:
            return self.positives.pair_weights(tensors["row"], tensors["pos"])
        # Only the positives are looked up, so a large grid costs O(positives) searches.
        positive = tensors["label"] > 0  # (N,)
        weights = torch.ones(len(positive), dtype=torch.float32)  # (N,)
        weights[positive] = self.positives.pair_weights(tensors["row"][positive], tensors["col"][positive])
        return weights

    def _build_examples(self, epoch: int) -> dict[str, Tensor]:
        shared = make_generator(self.seed, epoch, rank=None)
        if self.mode == "full":
            # Every process builds the whole grid with the shared permutation and keeps its
            # share. index_select copies the share, so the grid itself is freed.
            rows, cols, labels = full_grid_epoch(self.positives, shared, self.rows)
            if self.world_size == 1:
                return {"row": rows, "col": cols, "label": labels}
            share = _share(torch.arange(len(rows)), self.rank, self.world_size)  # (ceil(R' * C / W),)
            return {
                "row": rows.index_select(0, share),
                "col": cols.index_select(0, share),
                "label": labels.index_select(0, share),
            }

        subset = None
        if self.world_size > 1:
            order = torch.randperm(len(self.positives), generator=shared)  # (P,)
            subset = _share(order, self.rank, self.world_size)  # (ceil(P / W),)
        negatives = make_generator(self.seed, epoch, self.rank)
        if self.mode == "sampled":
            rows, cols, labels = sampled_epoch(
                self.positives, self.neg_ratio, negatives, self.column_weights, subset=subset
            )
            return {"row": rows, "col": cols, "label": labels}
        rows, positive_cols, negative_cols = triplet_epoch(
            self.positives, negatives, self.column_weights, n_negatives=self.neg_ratio, subset=subset
        )
        return {"row": rows, "pos": positive_cols, "neg": negative_cols}

    def __len__(self) -> int:
        return math.ceil(len(self.tensors["row"]) / self.batch_size)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"batch index {index} out of range for {len(self)} batches")
        window = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return {name: tensor[window] for name, tensor in self.tensors.items()}


def _share(order: Tensor, rank: int, world_size: int) -> Tensor:
    """Return every ``world_size``-th element of ``order``, starting at ``rank``.

    Like ``DistributedSampler``, the ``(N,)`` order is first padded with its own first
    elements to a multiple of ``world_size``. Every share then has ``ceil(N / world_size)``
    elements and every process runs the same number of batches, because a process with an
    extra batch would wait forever in the gradient all-reduce of distributed training. The
    shares are disjoint except for the fewer than ``world_size`` padded elements.
    """
    padding = -len(order) % world_size
    if padding > 0:
        order = torch.cat([order, order.repeat(math.ceil(padding / len(order)))[:padding]])  # (N + padding,)
    return order[rank::world_size]


def _check_positives_in_rows(positives: PositiveSet, rows: Tensor) -> None:
    """Raise a ValueError naming a row that has positives but is not among ``rows``."""
    allowed = torch.zeros(positives.n_rows, dtype=torch.bool)  # (R,)
    allowed[rows] = True
    outside = torch.nonzero((positives.row_counts > 0) & ~allowed).flatten()
    if outside.numel() > 0:
        raise ValueError(
            f"row {int(outside[0])} has training positives but is not among the training rows "
            f"({outside.numel()} such row(s)); a held-out row of a cold split must have no "
            f"training positives"
        )


class GridBatch(Dataset):
    """The full training grid as one batch: a block of rows with the labels of all columns.

    When one batch contains every training pair of the full grid, ``HybridMF`` scores it
    as one matrix product (``score_rows``) instead of gathering two latent vectors per
    pair. The loss is the same, and the memory traffic far smaller. The order of the pairs in
    a single batch does not change the step, so nothing is shuffled and every epoch is
    the same batch. Process ``rank`` takes every ``world_size``-th training row with all
    its columns, so shares differ by at most one row.

    Args:
        positives: Training positives, labelled 1; every other pair is labelled 0. When
            they have weights, the batch also has the key ``weights``: the ``(R, C)``
            float32 weight of each pair, 1 for an unknown pair. That matrix doubles the
            memory of the batch.
        rows: ``(R_train,)`` rows that training may use.
        rank: Index of this process.
        world_size: Number of processes.

    Example:
        >>> import numpy as np
        >>> positives = PositiveSet(np.array([[0, 1], [2, 0]]), n_rows=3, n_cols=2)
        >>> batch = GridBatch(positives, torch.tensor([0, 2]))[0]
        >>> batch["rows"].tolist(), batch["labels"].tolist()
        ([0, 2], [[0.0, 1.0], [1.0, 0.0]])
        >>> weighted = PositiveSet(np.array([[0, 1], [2, 0]]), n_rows=3, n_cols=2, weights=np.array([4.0, 0.5]))
        >>> GridBatch(weighted, torch.tensor([0, 2]))[0]["weights"].tolist()
        [[1.0, 4.0], [0.5, 1.0]]
    """

    # Device of the batch, which ``to`` changes.
    device = torch.device("cpu")

    def __init__(self, positives: PositiveSet, rows: Tensor, rank: int = 0, world_size: int = 1) -> None:
        self.rows = torch.as_tensor(rows, dtype=torch.int64)[rank::world_size]  # (R_share,)
        self.labels = positives.dense_rows(self.rows).to(torch.float32)  # (R_share, C)
        self.weights = None if positives.weights is None else positives.dense_weights(self.rows)  # (R_share, C)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Record the epoch; the batch is the same in every epoch."""
        self.epoch = epoch

    def to(self, device: torch.device | str) -> GridBatch:
        """Move the batch to ``device``.

        Returns:
            This object.
        """
        self.device = torch.device(device)
        self.rows, self.labels = self.rows.to(self.device), self.labels.to(self.device)
        if self.weights is not None:
            self.weights = self.weights.to(self.device)
        return self

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if index != 0:
            raise IndexError(f"batch index {index} out of range for 1 batch")
        if self.weights is None:
            return {"rows": self.rows, "labels": self.labels}
        return {"rows": self.rows, "labels": self.labels, "weights": self.weights}


def is_one_grid_batch(mode: str, n_pairs: int, batch_size: int, world_size: int) -> bool:
    """Return whether full-grid training fits in one batch in every process.

    Args:
        mode: Kind of training examples, ``"full"``, ``"sampled"`` or ``"triplet"``.
        n_pairs: Pairs of the training grid, training rows × columns.
        batch_size: Examples per batch.
        world_size: Number of processes.

    Example:
        >>> is_one_grid_batch("full", 100, batch_size=50, world_size=2), is_one_grid_batch("full", 101, 50, 2)
        (True, False)
    """
    return mode == "full" and batch_size >= math.ceil(n_pairs / world_size)


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
    ``served`` counts the items handed out in the current iteration. ``start`` skips the
    first items of the next iteration only. ``_ResumableLoader`` uses both to continue an
    epoch that a checkpoint interrupted.
    """

    def __init__(self, dataset: Dataset) -> None:
        super().__init__(dataset, num_replicas=1, rank=0, shuffle=False)
        self.start = 0
        self.served = 0

    def __iter__(self):
        start, self.start = self.start, 0
        self.served = start
        for index in range(start, len(self.dataset)):
            self.served = index + 1
            yield index

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)


class InteractionDataModule(pl.LightningDataModule):
    """Training batches and validation chunks for one split of an interaction data set.

    Args:
        data: The interaction data set. When it has ``weights``, the training pairs keep
            their weights in the loss. Validation pairs are plain positives.
        split: Training and held-out pairs. Every training pair must be a known pair of
            ``data`` when ``data`` has weights.
        batch_size: Training examples per batch.
        seed: Seed of the epoch shuffles and negative draws.
        negatives: ``"full"`` trains on every pair of the grid, with training positives
            labelled 1 and all other pairs 0. ``"sampled"`` trains on every training
            positive plus ``neg_ratio`` fresh negatives per positive in each epoch.
            Triplets always sample their negatives, so this has no effect when
            ``triplets`` is true.
        neg_ratio: Sampled negatives per positive, for sampled pairs and for triplets.
        neg_sampling: ``"uniform"`` draws negative columns uniformly; ``"popularity"``
            draws them in proportion to ``popularity_weights`` of the training positives,
            so popular columns are drawn more often.
        triplets: Serve ``(row, pos, neg)`` triplets for the BPR or margin loss instead of
            labelled pairs.
        eval_chunk_rows: Rows per validation chunk; memory is ``eval_chunk_rows × columns``.
            Chunks are made smaller where needed to stay within ``EVAL_CHUNK_CELLS`` pairs.

    Raises:
        ValueError: When an option is not one of the accepted values or out of range.

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
        >>> triplets = InteractionDataModule(data, make_split(data.pairs, 2, val_fraction=0), batch_size=4,
        ...                                  neg_ratio=2, triplets=True)
        >>> triplets.setup("fit")
        >>> [sorted(batch) for batch in triplets.train_dataloader()]
        [['neg', 'pos', 'row']]
    """

    def __init__(
        self,
        data: InteractionData,
        split: Split,
        batch_size: int = 2000,
        seed: int = 0,
        negatives: str = "full",
        neg_ratio: int = 4,
        neg_sampling: str = "uniform",
        triplets: bool = False,
        eval_chunk_rows: int = 1024,
    ) -> None:
        super().__init__()
        if negatives not in NEGATIVE_MODES:
            raise ValueError(f"negatives must be one of {NEGATIVE_MODES}, got {negatives!r}")
        if neg_sampling not in NEGATIVE_SAMPLING:
            raise ValueError(f"neg_sampling must be one of {NEGATIVE_SAMPLING}, got {neg_sampling!r}")
        if not isinstance(triplets, bool):
            raise TypeError(f"triplets must be a bool, got {type(triplets).__name__}")
        for name, value, minimum in (
            ("batch_size", batch_size, 1),
            ("seed", seed, 0),
            ("neg_ratio", neg_ratio, 1),
            ("eval_chunk_rows", eval_chunk_rows, 1),
        ):
            _check_integer(name, value, minimum)
        self.data = data
        self.split = split
        self.batch_size = batch_size
        self.seed = seed
        self.negatives = negatives
        self.neg_ratio = neg_ratio
        self.neg_sampling = neg_sampling
        self.triplets = triplets
        self.eval_chunk_rows = eval_chunk_rows
        self.train_positives: PositiveSet | None = None
        self.val_positives: PositiveSet | None = None

    @property
    def mode(self) -> str:
        """Kind of training examples: ``"full"``, ``"sampled"`` or ``"triplet"``."""
        return "triplet" if self.triplets else self.negatives

    def setup(self, stage: str | None = None) -> None:
        if self.train_positives is None:
            weights = self.data.pair_weights(self.split.train_pairs)  # (P_train,) or None
            if weights is not None and len(weights) > 0:
                logger.info(
                    "%d training pairs with confidence weights from %g to %g (mean %g); a pair of "
                    "weight w weighs w * pos_weight in the BCE loss, and its triplets weigh w",
                    len(weights),
                    weights.min(),
                    weights.max(),
                    weights.mean(),
                )
            self.train_positives = PositiveSet(self.split.train_pairs, self.data.n_rows, self.data.n_cols, weights)
            self.val_positives = PositiveSet(self.split.val_pairs, self.data.n_rows, self.data.n_cols)

    def _rank_and_world_size(self) -> tuple[int, int]:
        if self.trainer is None:
            return 0, 1
        return self.trainer.global_rank, self.trainer.world_size

    def train_dataloader(self) -> DataLoader:
        rank, world_size = self._rank_and_world_size()
        train_rows = torch.as_tensor(self.split.train_rows(self.data.n_rows))
        if is_one_grid_batch(self.mode, len(train_rows) * self.data.n_cols, self.batch_size, world_size):
            return self._epoch_loader(GridBatch(self.train_positives, train_rows, rank, world_size))
        column_weights = popularity_weights(self.train_positives) if self.neg_sampling == "popularity" else None
        batches = EpochBatches(
            self.train_positives,
            train_rows,
            self.batch_size,
            self.seed,
            self.mode,
            rank,
            world_size,
            neg_ratio=self.neg_ratio,
            column_weights=column_weights,
        )
        return self._epoch_loader(batches)

    def _epoch_loader(self, batches: EpochBatches | GridBatch) -> DataLoader:
        """Serve ``batches`` from the trainer's device, resumable within an epoch."""
        if self.trainer is not None:
            batches.to(self.trainer.strategy.root_device)
        return _loader(batches, _EpochSampler(batches), _ResumableLoader)

    def transfer_batch_to_device(self, batch: dict[str, Tensor], device: torch.device, dataloader_idx: int) -> dict[str, Tensor]:
        # Batches are flat dicts of tensors, usually on the device already (see
        # EpochBatches.to); Lightning's generic collection walk costs more per step.
        return {name: tensor.to(device, non_blocking=True) for name, tensor in batch.items()}

    def val_dataloader(self) -> DataLoader:
        chunks = self.val_chunks(*self._rank_and_world_size())
        return _loader(chunks, _EpochSampler(chunks))

    def val_chunks(self, rank: int = 0, world_size: int = 1) -> RowChunks:
        """Return a process's share of the validation rows, in chunks with their masks.

        Process ``rank`` takes every ``world_size``-th validation row from position
        ``rank`` on, so the shares are disjoint and cover every row exactly once, without
        the padding that ``DistributedSampler`` adds. The defaults return every row, as
        a final single-process evaluation needs.

        Args:
            rank: Index of the process, in ``[0, world_size)``.
            world_size: Number of processes.

        Returns:
            The chunks of the process's rows.

        Raises:
            ValueError: When ``rank`` does not lie in ``[0, world_size)``.
        """
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must lie in [0, world_size) = [0, {world_size}), got {rank}")
        self.setup("validate")
        rows = torch.as_tensor(self.split.val_rows, dtype=torch.int64)[rank::world_size]  # (R_val / W,)
        chunk_rows = min(self.eval_chunk_rows, max(1, EVAL_CHUNK_CELLS // self.data.n_cols))
        return RowChunks(rows, self.train_positives, self.val_positives, chunk_rows)


def _loader(dataset: Dataset, sampler: _EpochSampler, loader_class: type[DataLoader] = DataLoader) -> DataLoader:
    """Wrap a dataset of whole batches in a DataLoader that collates nothing."""
    # A generator of its own keeps the DataLoader from drawing its base seed from the
    # global random state, so a resumed run draws the same dropout masks as a fresh one.
    return loader_class(dataset, batch_size=None, sampler=sampler, generator=torch.Generator())


class _ResumableLoader(DataLoader):
    """A DataLoader of whole batches whose position within an epoch travels in checkpoints.

    Lightning stores ``state_dict()`` in every checkpoint and, when it resumes from one,
    passes it to ``load_state_dict`` before the first batch is drawn, so that the
    interrupted epoch continues after the batches it had finished. Lightning 2.6 draws
    no batch ahead from a loader that has a length, so the items the sampler has served
    are exactly the batches trained when a checkpoint is written.
    """

    def state_dict(self) -> dict[str, int]:
        return {"served": self.sampler.served}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        # A finished epoch needs nothing skipped: the next one starts from its first batch.
        if state_dict["served"] < len(self.sampler):
            self.sampler.start = state_dict["served"]
