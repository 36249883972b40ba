"""Checkpoint directories that are either complete or invisible.

A checkpoint is written into `.staging/checkpoint-N`, every file is fsynced, `manifest.json` (each file with its
size and sha256, the vistune version, the exact base parts) is written last, and only then is the directory
renamed to `checkpoint-N`. A checkpoint counts as complete only when its manifest exists and lists files that are
all there, so a save killed half-way is never picked by `resume: auto`, and rotation never deletes the newest
complete checkpoint.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from vistune.model.checkpoints.manifest import MANIFEST, ManifestError, fsync_path, verify_manifest

STAGING = ".staging"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


class CheckpointSaveError(RuntimeError):
    """Writing a checkpoint failed (e.g. disk full); the staged copy is removed, complete checkpoints are untouched."""


def is_complete(directory: str | Path) -> bool:
    """Cheap completeness test (manifest present, files present with their sizes); no hashing."""
    try:
        verify_manifest(directory, hashes=False)
    except ManifestError:
        return False
    return True


def checkpoint_step(path: str | Path) -> int | None:
    match = _CHECKPOINT.match(Path(path).name)
    return int(match.group(1)) if match else None


def list_checkpoints(output_dir: str | Path, complete_only: bool = True) -> list[Path]:
    """checkpoint-N directories of a run, oldest first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    if complete_only:
        found = [p for p in found if is_complete(p)]
    return sorted(found, key=checkpoint_step)


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint, or None."""
    found = list_checkpoints(output_dir)
    return found[-1] if found else None


def staging_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / STAGING


def clear_stale(output_dir: str | Path) -> list[Path]:
    """Removes the staging area and checkpoint-N directories without a valid manifest (interrupted saves)."""
    removed = []
    stage = staging_dir(output_dir)
    if stage.exists():
        shutil.rmtree(stage, ignore_errors=True)
        removed.append(stage)
    for path in list_checkpoints(output_dir, complete_only=False):
        if not is_complete(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def publish(staged: Path, final: Path) -> Path:
    """Atomically moves a staged, manifested checkpoint to its final name (replacing an older copy)."""
    if not (staged / MANIFEST).is_file():
        raise ManifestError(f"{staged}: refusing to publish a checkpoint without its manifest")
    if final.exists():
        trash = final.with_name(f".old-{final.name}")
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(final, trash)
        os.replace(staged, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(staged, final)
    fsync_path(final.parent)
    return final


def rotate(output_dir: str | Path, keep: int) -> list[Path]:
    """Deletes the oldest complete checkpoints so that `keep` (>= 1) remain."""
    found = list_checkpoints(output_dir)
    doomed = found[: max(0, len(found) - max(1, keep))]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed
