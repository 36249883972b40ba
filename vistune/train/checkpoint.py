"""Checkpoint directories that are either complete or invisible.

A checkpoint is written into `.staging/checkpoint-N`, every file is fsynced, `manifest.json` (each file with its
size and sha256, the vistune version, the exact base parts) is written last, and only then is the directory
renamed to `checkpoint-N`. A checkpoint counts as complete only when its manifest exists and lists files that are
all there, so a save killed half-way is never picked by `resume: auto`, and rotation never deletes the newest
complete checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

MANIFEST = "manifest.json"
STAGING = ".staging"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


class ManifestError(RuntimeError):
    """A directory's files do not match its manifest; the message names the files."""


class CheckpointSaveError(RuntimeError):
    """Writing a checkpoint failed (e.g. disk full); the staged copy is removed, complete checkpoints are untouched."""


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_manifest(directory: str | Path, extra: dict | None = None, skip=None) -> Path:
    """Fsyncs every file under `directory` (but those `skip(relpath)` excludes), then writes manifest.json
    atomically: the completeness marker."""
    from vistune import __version__

    directory = Path(directory)
    files = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST):
        rel = path.relative_to(directory).as_posix()
        if skip is not None and skip(rel):
            continue
        _fsync(path)
        files[rel] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
    manifest = {"vistune_version": __version__, **(extra or {}), "files": files}
    tmp = directory / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    _fsync(tmp)
    os.replace(tmp, directory / MANIFEST)
    _fsync(directory)
    return directory / MANIFEST


def verify_manifest(directory: str | Path, hashes: bool = True) -> dict:
    """Checks every listed file exists with its size (and sha256); raises ManifestError naming the bad ones."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        raise ManifestError(f"{directory}: no {MANIFEST} (an incomplete or foreign directory)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ManifestError(f"{path}: unreadable manifest ({err})") from None
    bad = []
    for rel, entry in manifest.get("files", {}).items():
        file = directory / rel
        if not file.is_file():
            bad.append(f"{rel} (missing)")
        elif file.stat().st_size != entry["size"]:
            bad.append(f"{rel} (size {file.stat().st_size} != {entry['size']})")
        elif hashes and sha256_file(file) != entry["sha256"]:
            bad.append(f"{rel} (sha256 mismatch)")
    if bad:
        raise ManifestError(f"{directory}: files that do not match {MANIFEST}: {', '.join(bad)}")
    return manifest


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
    _fsync(final.parent)
    return final


def rotate(output_dir: str | Path, keep: int) -> list[Path]:
    """Deletes the oldest complete checkpoints so that `keep` (>= 1) remain."""
    found = list_checkpoints(output_dir)
    doomed = found[: max(0, len(found) - max(1, keep))]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed
