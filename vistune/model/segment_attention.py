"""Attention over packed rows without cross-sample attention, on any device: the CPU fallback of flash varlen.

Registered with transformers' public `AttentionInterface` as "vistune_packed". A row whose `position_ids`
restart at 0 holds several samples; each runs causal SDPA on its own span (cost: sum of n_i^2, not (sum n_i)^2).
Anything else (padded batches with a mask, a single sample, generation with a cache) goes to transformers' SDPA.
"""

from __future__ import annotations

import importlib.util

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

SEGMENT_ATTENTION = "vistune_packed"


def _segments(position_ids: torch.Tensor | None, length: int) -> list[tuple[int, int]] | None:
    """[(start, end)] of the samples in a [1, length] row, or None when it is not a packed row."""
    if position_ids is None or position_ids.shape[0] != 1 or position_ids.shape[-1] != length:
        return None
    row = position_ids.reshape(-1)
    starts = (row == 0).nonzero().flatten().tolist()
    if len(starts) < 2 or starts[0] != 0:
        return None
    ends = [*starts[1:], length]
    return list(zip(starts, ends))


def segment_attention_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                              attention_mask: torch.Tensor | None, dropout: float = 0.0,
                              scaling: float | None = None, position_ids: torch.Tensor | None = None, **kwargs):
    """query [1, H, S, D], key / value [1, H_kv, S, D] -> ([1, S, H, D], None)."""
    spans = _segments(position_ids, query.shape[2]) if query.shape[2] == key.shape[2] else None
    if spans is None or not getattr(module, "is_causal", True):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      position_ids=position_ids, **kwargs)
    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    out = torch.cat([
        F.scaled_dot_product_attention(query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], dropout_p=dropout,
                                       is_causal=True, scale=scaling)
        for a, b in spans
    ], dim=2)
    return out.transpose(1, 2).contiguous(), None


def packed_attention_implementation() -> str:
    """flash_attention_2 (varlen from position_ids) on a GPU that has it, else the segment fallback."""
    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return SEGMENT_ATTENTION


AttentionInterface.register(SEGMENT_ATTENTION, segment_attention_forward)
ALL_MASK_ATTENTION_FUNCTIONS.register(SEGMENT_ATTENTION, sdpa_mask)  # padded batches still get their mask
