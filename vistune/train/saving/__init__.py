"""What a run leaves behind: checkpoints that are complete or invisible, artifacts for inference, the stream
position, and the export to standard HF directories."""

from vistune.train.saving.export import export

__all__ = ["export"]
