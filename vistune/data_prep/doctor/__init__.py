"""The data doctor: every problem a dataset (records or shards) has, and what it holds, found before training."""

from vistune.data_prep.doctor.stats import dataset_stats
from vistune.data_prep.doctor.validate import diagnose

__all__ = ["dataset_stats", "diagnose"]
