"""The training stages: align / instruct (the engine, which also starts the others), prefer on TRL (DPO family,
ORPO / SimPO), and evaluation while training."""

from vistune.train.stages.engine import TrainingStopped, train

__all__ = ["TrainingStopped", "train"]
