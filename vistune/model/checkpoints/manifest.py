"""Manifests: a directory's files with their sizes and sha256, written last, so a directory is complete or visibly not.

Checkpoints, run outputs and exports carry one (`manifest.json`); the loader verifies it before reading weights.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

MANIFEST = "manifest.json"


class ManifestError(RuntimeError):
    """A directory's files do not match its manifest; the message names the files."""


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fsync_path(path: Path) -> None:
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
        fsync_path(path)
        files[rel] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
    manifest = {"vistune_version": __version__, **(extra or {}), "files": files}
    tmp = directory / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    fsync_path(tmp)
    os.replace(tmp, directory / MANIFEST)
    fsync_path(directory)
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
