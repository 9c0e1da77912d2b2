"""Distributed validation: sharded rows, merged evaluator state, and a 2-process DDP run.

The DDP test starts ``scripts/fit.py`` with ``--strategy ddp --devices 2`` on the CPU
(Lightning uses the gloo backend there), so the two processes talk over the loopback
interface. It takes about 20 to 30 seconds, most of it to start the two processes.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REPOSITORY, write_mef_layout

from hybridmf.data.datamodule import InteractionDataModule
from hybridmf.data.interactions import InteractionData
from hybridmf.data.splits import make_split
from hybridmf.distributed import gather_variable_length
from hybridmf.evaluation.metrics import RankingEvaluator


class _TwoProcessGather:
    """Stand-in for ``all_gather`` in process 0 of two: the other process sends ``others`` in turn."""

    def __init__(self, *others: torch.Tensor) -> None:
        self.others = list(others)

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        return torch.stack([tensor, self.others.pop(0)])


def _tiny_datamodule(n_rows: int = 7, n_cols: int = 6) -> InteractionDataModule:
    generator = np.random.default_rng(0)
    pairs = np.unique(np.stack([generator.integers(0, n_rows, 20), generator.integers(0, n_cols, 20)], axis=1), axis=0)
    data = InteractionData(
        rows=pd.DataFrame({"id": [f"r{i}" for i in range(n_rows)], "name": ""}),
        cols=pd.DataFrame({"id": [f"c{i}" for i in range(n_cols)], "name": ""}),
        pairs=pairs,
    )
    datamodule = InteractionDataModule(data, make_split(data.pairs, n_rows, "warm", 0.3, seed=0), eval_chunk_rows=2)
    datamodule.setup("fit")
    return datamodule


def test_gather_variable_length_trims_padding():
    mine = torch.tensor([True, False, True])
    other = torch.tensor([False, True])
    # The other process reports its length, then sends its tensor padded to the longest one.
    gather = _TwoProcessGather(torch.tensor([2]), torch.tensor([0, 1, 0], dtype=torch.uint8))

    parts = gather_variable_length(mine, gather, torch.device("cpu"))

    assert [part.tolist() for part in parts] == [mine.tolist(), other.tolist()]
    assert parts[1].dtype == torch.bool


@pytest.mark.parametrize("world_size", [2, 3])
def test_val_chunks_shards_cover_rows_once(world_size: int):
    datamodule = _tiny_datamodule()
    all_rows = datamodule.val_chunks().rows.tolist()

    shards = [datamodule.val_chunks(rank, world_size).rows.tolist() for rank in range(world_size)]

    assert len(all_rows) % world_size != 0  # the uneven case: no padding, no duplicate
    assert sorted(row for shard in shards for row in shard) == sorted(all_rows)


@pytest.mark.parametrize("pooled_sample", [None, 15])
def test_merged_shards_equal_single_evaluation(pooled_sample: int | None):
    datamodule = _tiny_datamodule()
    scores = torch.randn(7, 6, generator=torch.Generator().manual_seed(1))  # (rows, columns)

    def evaluate(chunks) -> RankingEvaluator:
        evaluator = RankingEvaluator(k=2, pooled_sample=pooled_sample)
        for chunk in chunks:
            evaluator.update(scores[chunk["rows"]], chunk["candidates"], chunk["positives"], rows=chunk["rows"])
        return evaluator

    single = evaluate(datamodule.val_chunks()).compute()
    merged = RankingEvaluator(k=2, pooled_sample=pooled_sample)
    for rank in range(2):
        merged.merge_state(evaluate(datamodule.val_chunks(rank, 2)).state())
    result = merged.compute()

    assert result.keys() == single.keys()
    for name, value in single.items():
        assert result[name] == pytest.approx(value, rel=1e-12, nan_ok=True), name


def test_val_chunks_rejects_rank_outside_world():
    with pytest.raises(ValueError, match=r"rank must lie in \[0, world_size\) = \[0, 2\), got 2"):
        _tiny_datamodule().val_chunks(rank=2, world_size=2)


def _logged_validation(log: Path, epoch: int) -> dict[str, float]:
    with open(log, newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("val/auroc") and int(row["epoch"]) == epoch]
    assert len(rows) == 1
    return {name.removeprefix("val/"): float(value) for name, value in rows[0].items() if name.startswith("val/")}


def test_ddp_validation_equals_single_process_evaluation(tmp_path: Path):
    # 13 drugs: every drug is a validation row of the warm split, and 13 rows do not divide
    # between 2 processes, so the shards have 7 and 6 rows.
    data_dir = write_mef_layout(tmp_path / "mef", n_drugs=13)
    out = tmp_path / "run"
    command = [
        sys.executable, str(REPOSITORY / "scripts" / "fit.py"), "--config", "none",
        "--data-dir", str(data_dir), "--out", str(out), "--max-epochs", "2", "--batch-size", "16",
        "--val-fraction", "0.2", "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp",
        "--threads", "1", "--no-progress",
    ]  # fmt: skip
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPOSITORY), os.environ.get("PYTHONPATH", "")])}
    finished = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]

    # metrics.json: process 0 alone evaluated the best checkpoint on every validation row.
    single = json.loads((out / "metrics.json").read_text())
    best_epoch = torch.load(single["checkpoint"], map_location="cpu", weights_only=True)["epoch"]
    # metrics.csv: what the two processes logged for that epoch after merging their shards.
    distributed = _logged_validation(out / "logs" / "metrics.csv", best_epoch)

    assert distributed["rows_evaluated"] == single["rows_evaluated"] > 0
    for name in ("auroc", "aupr", "accuracy", "ndcg@10", "hr@10", "precision@10", "recall@10", "mrr"):
        # The log stores float32 values, hence the relative tolerance.
        assert math.isclose(distributed[name], single[name], rel_tol=1e-6), name
