"""Checkpoints on disk: a base users already have, LLaVA's own formats, weight files, projector files, manifests,
and trained runs loaded back for inference."""

from vistune.model.checkpoints.load import load_start, load_trained
from vistune.model.checkpoints.manifest import MANIFEST, ManifestError, verify_manifest, write_manifest
from vistune.model.checkpoints.projector import PROJECTOR_FILE, load_projector, save_projector

__all__ = [
    "MANIFEST", "PROJECTOR_FILE", "ManifestError", "load_projector", "load_start", "load_trained", "save_projector",
    "verify_manifest", "write_manifest",
]
