"""Resumed and repeated runs reproduce an uninterrupted run exactly on the CPU.

The model uses ID dropout and an MLP head with dropout, so the comparisons also cover the
global random states that a checkpoint must carry. Each run trains on the tiny synthetic
MEF layout of ``conftest.py`` with three batches per epoch.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from conftest import write_mef_layout

from hybridmf import training
from hybridmf.config import FitConfig
from hybridmf.resume import keep_previous_log
from hybridmf.training import run_fit

# Keys of metrics.json that name files or measure time, and so differ between runs.
RUN_SPECIFIC = ("checkpoint", "last_checkpoint", "wall_seconds")


def _config(data_dir: Path, out: Path, **options) -> FitConfig:
    settings = dict(
        data_dir=str(data_dir),
        out=str(out),
        max_epochs=4,
        batch_size=40,  # 12 drugs × 10 ADRs = 120 pairs: 3 batches per epoch
        k=3,
        head="mlp",
        head_hidden=(8,),
        head_dropout=0.3,
        id_dropout=0.2,
        optimizer="adam",
        lr=0.05,
        progress=False,
        seed=3,
    )
    settings.update(options)
    return FitConfig(**settings)


def _metrics(result: dict) -> dict:
    return {key: value for key, value in result.items() if key not in RUN_SPECIFIC}


def _last_state(out: Path) -> dict:
    return torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


def _assert_same_training_state(first: dict, second: dict) -> None:
    # The "epoch" entry is not compared: Lightning's best-epoch callback rewrites last.ckpt
    # when training ends if it has not written it in this process, with the epoch counter
    # already advanced past the last epoch, and the weights of that epoch.
    assert first["global_step"] == second["global_step"]
    assert first["state_dict"].keys() == second["state_dict"].keys()
    for name, tensor in first["state_dict"].items():
        assert torch.equal(tensor, second["state_dict"][name]), name
    first_optimizer, second_optimizer = first["optimizer_states"][0]["state"], second["optimizer_states"][0]["state"]
    for index, values in first_optimizer.items():
        for name, tensor in values.items():
            assert torch.equal(torch.as_tensor(tensor), torch.as_tensor(second_optimizer[index][name])), (index, name)


class _StopAtStep(pl.Callback):
    """Raise after a given training step, as if the process had been killed there."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError(f"simulated kill after step {self.step}")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[dict, Path, Path]:
    root = tmp_path_factory.mktemp("resume")
    data_dir = write_mef_layout(root / "mef")
    out = root / "uninterrupted"
    return run_fit(_config(data_dir, out)), out, data_dir


def test_same_seed_gives_same_run(uninterrupted, tmp_path: Path):
    result, out, data_dir = uninterrupted
    again = run_fit(_config(data_dir, tmp_path / "again"))

    assert _metrics(again) == _metrics(result)
    _assert_same_training_state(_last_state(tmp_path / "again"), _last_state(out))


def test_resume_at_epoch_end_matches_uninterrupted(uninterrupted, tmp_path: Path):
    result, out, data_dir = uninterrupted
    run_fit(_config(data_dir, tmp_path, max_epochs=2))
    resumed = run_fit(_config(data_dir, tmp_path, resume=str(tmp_path / "checkpoints" / "last.ckpt")))

    assert _metrics(resumed) == _metrics(result)
    _assert_same_training_state(_last_state(tmp_path), _last_state(out))
    assert (tmp_path / "logs" / "metrics-before-resume-1.csv").is_file()


def test_resume_within_epoch_matches_uninterrupted(uninterrupted, tmp_path: Path, monkeypatch):
    result, out, data_dir = uninterrupted
    with_kill = training.resume_callbacks

    def callbacks_with_kill(config, out_dir, monitor):
        return [*with_kill(config, out_dir, monitor), _StopAtStep(5)]

    monkeypatch.setattr(training, "resume_callbacks", callbacks_with_kill)
    with pytest.raises(RuntimeError, match="simulated kill after step 5"):
        run_fit(_config(data_dir, tmp_path, checkpoint_every_n_steps=4))
    monkeypatch.setattr(training, "resume_callbacks", with_kill)
    interrupted = _last_state(tmp_path)
    # Step 4 is the first batch of the second epoch: the checkpoint lies within an epoch.
    assert (interrupted["global_step"], interrupted["epoch"]) == (4, 1)

    resumed = run_fit(_config(data_dir, tmp_path, checkpoint_every_n_steps=4, resume=str(tmp_path / "checkpoints" / "last.ckpt")))

    assert _metrics(resumed) == _metrics(result)
    _assert_same_training_state(_last_state(tmp_path), _last_state(out))


def test_resume_without_checkpoint_file_is_rejected(tmp_path: Path):
    config = FitConfig(out=str(tmp_path), resume=str(tmp_path / "missing.ckpt"), progress=False)

    with pytest.raises(ValueError, match=r"--resume '.*missing.ckpt': no such checkpoint file"):
        run_fit(config)


def test_keep_previous_log_numbers_old_logs(tmp_path: Path):
    logs = tmp_path / "logs"
    logs.mkdir()
    for expected in ("metrics-before-resume-1.csv", "metrics-before-resume-2.csv"):
        (logs / "metrics.csv").write_text("epoch\n0\n")

        assert keep_previous_log(tmp_path) == logs / expected
    assert keep_previous_log(tmp_path) is None


def test_resume_with_other_options_rejected(uninterrupted, tmp_path: Path):
    _, _, data_dir = uninterrupted
    run_fit(_config(data_dir, tmp_path, max_epochs=1))
    log = (tmp_path / "logs" / "metrics.csv").read_text()
    config = (tmp_path / "config.json").read_text()

    with pytest.raises(ValueError, match=r"the checkpoint was written with other model options \(k: 3 in the checkpoint, 4 now\)"):
        run_fit(_config(data_dir, tmp_path, k=4, resume=str(tmp_path / "checkpoints" / "last.ckpt")))
    assert (tmp_path / "logs" / "metrics.csv").read_text() == log
    assert (tmp_path / "config.json").read_text() == config
    assert not list((tmp_path / "logs").glob("metrics-before-resume-*.csv"))


def test_selected_epoch_counts_epochs(uninterrupted, tmp_path: Path):
    _, _, data_dir = uninterrupted
    result = run_fit(_config(data_dir, tmp_path, select_epoch="best", val_every_n_epochs=2))
    best = Path(result["checkpoint"]).name  # best-{0-based epoch}.ckpt

    assert result["selected_epoch"] == int(best.removeprefix("best-").removesuffix(".ckpt")) + 1


def test_moved_run_resumes_in_its_new_folder(uninterrupted, tmp_path: Path):
    _, _, data_dir = uninterrupted
    original = tmp_path / "original"
    run_fit(_config(data_dir, original, max_epochs=2, select_epoch="best"))
    moved = tmp_path / "moved"
    shutil.copytree(original, moved)
    before = {path.name: path.read_bytes() for path in (original / "checkpoints").iterdir()}

    result = run_fit(_config(data_dir, moved, max_epochs=4, select_epoch="best", resume=str(moved / "checkpoints" / "last.ckpt")))

    assert Path(result["checkpoint"]).parent == (moved / "checkpoints").resolve()
    assert {path.name: path.read_bytes() for path in (original / "checkpoints").iterdir()} == before
    assert not list((moved / "checkpoints").glob("last-v*.ckpt"))
    assert torch.load(moved / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["global_step"] == 12


def test_copied_run_without_best_file_warns(uninterrupted, tmp_path: Path, caplog):
    _, _, data_dir = uninterrupted
    original = tmp_path / "original"
    run_fit(_config(data_dir, original, max_epochs=2, select_epoch="best"))
    copied = tmp_path / "copied"
    shutil.copytree(original, copied)
    for path in (copied / "checkpoints").glob("best-*.ckpt"):
        path.unlink()

    with caplog.at_level("WARNING", logger="hybridmf.training"):
        run_fit(_config(data_dir, copied, max_epochs=3, select_epoch="best", resume=str(copied / "checkpoints" / "last.ckpt")))

    assert any("is not in" in record.getMessage() and "best epoch before the resume" in record.getMessage() for record in caplog.records)


def test_new_run_into_used_folder_rejected(uninterrupted):
    result, out, data_dir = uninterrupted
    before = (out / "checkpoints" / "last.ckpt").read_bytes()

    with pytest.raises(ValueError, match=r"already contains checkpoints of an earlier run \(.*\.ckpt\)"):
        run_fit(_config(data_dir, out))
    assert (out / "checkpoints" / "last.ckpt").read_bytes() == before
