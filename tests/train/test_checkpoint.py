"""Checkpoint visibility: only complete (manifested) checkpoints count; corrupt files are named."""

from __future__ import annotations

import pytest

from vistune.model.checkpoints.manifest import ManifestError, verify_manifest, write_manifest
from vistune.train.saving import checkpoint as ckpt


def _fake(root, step, complete=True):
    d = root / f"checkpoint-{step}"
    (d / "adapter").mkdir(parents=True)
    (d / "adapter" / "w.bin").write_bytes(b"x" * step)
    (d / "trainer_state.json").write_text("{}")
    if complete:
        write_manifest(d)
    return d


def test_incomplete_and_staged_checkpoints_are_never_picked(tmp_path):
    _fake(tmp_path, 2)
    _fake(tmp_path, 4)
    _fake(tmp_path, 6, complete=False)  # killed before its manifest
    (tmp_path / ".staging" / "checkpoint-8").mkdir(parents=True)  # killed while staging
    assert ckpt.latest_checkpoint(tmp_path).name == "checkpoint-4"
    removed = {p.name for p in ckpt.clear_stale(tmp_path)}
    assert removed == {".staging", "checkpoint-6"}
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["checkpoint-2", "checkpoint-4"]


def test_a_truncated_file_makes_a_checkpoint_incomplete(tmp_path):
    d = _fake(tmp_path, 3)
    (d / "adapter" / "w.bin").write_bytes(b"x")
    assert not ckpt.is_complete(d)
    assert ckpt.latest_checkpoint(tmp_path) is None


def test_corrupt_file_is_named(tmp_path):
    d = _fake(tmp_path, 3)
    (d / "adapter" / "w.bin").write_bytes(b"y" * 3)  # same size, different bytes
    with pytest.raises(ManifestError, match=r"adapter/w.bin \(sha256 mismatch\)"):
        verify_manifest(d)


def test_rotation_keeps_the_newest_complete(tmp_path):
    for step in (1, 2, 3, 10):
        _fake(tmp_path, step)
    _fake(tmp_path, 11, complete=False)
    ckpt.rotate(tmp_path, keep=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path, complete_only=False)] == [
        "checkpoint-3", "checkpoint-10", "checkpoint-11"]


def test_publish_refuses_an_unmanifested_dir(tmp_path):
    staged = tmp_path / ".staging" / "checkpoint-1"
    staged.mkdir(parents=True)
    with pytest.raises(ManifestError):
        ckpt.publish(staged, tmp_path / "checkpoint-1")
    assert not (tmp_path / "checkpoint-1").exists()
