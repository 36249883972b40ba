"""Batching: the training datasets (in memory or from the cache), collators (padded or packed), the length-grouped
sampler, and the prefer stage's preference pairs."""

from vistune.data_prep.batching.cached_dataset import CachedDataset
from vistune.data_prep.batching.collate import DataCollator
from vistune.data_prep.batching.dataset import VisualInstructDataset
from vistune.data_prep.batching.packing import PackedCollator
from vistune.data_prep.batching.sampler import LengthGroupedSampler

__all__ = ["CachedDataset", "DataCollator", "LengthGroupedSampler", "PackedCollator", "VisualInstructDataset"]
