"""Data kept on disk for training: the tokenised cache every rank shares, WebDataset shards and streaming from them."""

from vistune.data_prep.store.shards import write_shards
from vistune.data_prep.store.stream import StreamDataset

__all__ = ["StreamDataset", "write_shards"]
