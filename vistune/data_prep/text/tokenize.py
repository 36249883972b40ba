"""Tokenising one record: ids, labels that supervise exactly the reply spans, image-token expansion, truncation.

The rendered text is tokenised once with character offsets; a token is supervised when its characters
overlap a reply span (so a reply's first token may carry the separator space before it, as LLaVA's
tokenisation does). No substring is re-tokenised and no offset is subtracted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np

from vistune import IGNORE_INDEX, IMAGE_TOKEN
from vistune.data_prep.records import Record, RecordError
from vistune.data_prep.text.templates import Rendered, Template


@dataclass
class TokenizedRecord:
    input_ids: list[int]  # with each `<image>` expanded to its image's token count (fixed, or by size for AnyRes)
    labels: list[int]  # the token id where supervised, IGNORE_INDEX elsewhere
    num_images: int  # images the ids hold (the record's first num_images; truncation drops later ones)
    turns_kept: int  # assistant turns kept after truncation
    turns_total: int  # assistant turns in the record

    @property
    def num_supervised(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE_INDEX)

    @property
    def truncated(self) -> bool:
        return self.turns_kept < self.turns_total


ImageTokens = int | Sequence[int] | Callable[[Record], Sequence[int]]
"""Tokens per image: one count for every image, one per image of the record, or a function of the record (AnyRes:
the count depends on each image's size; it may raise RecordError for an unreadable image)."""


def _image_counts(record: Record, num_image_tokens: ImageTokens) -> list[int]:
    if callable(num_image_tokens):
        return [int(n) for n in num_image_tokens(record)]
    if isinstance(num_image_tokens, int):
        return [num_image_tokens] * len(record.images)
    return [int(n) for n in num_image_tokens]


def tokenize_record(record: Record, tokenizer, template: Template, *, num_image_tokens: ImageTokens,
                    max_length: int) -> TokenizedRecord:
    """Raises RecordError (too_long, no_supervised_tokens, tokenization) when the record cannot be used."""
    rendered = _render(record, tokenizer, template)
    ids, offsets = _encode([rendered.text], tokenizer)[0]
    counts = _image_counts(record, num_image_tokens)
    return _assemble(record, rendered, ids, offsets, tokenizer, counts, max_length)


def tokenize_records(records: list[Record], tokenizer, template: Template, *, num_image_tokens: ImageTokens,
                     max_length: int, batch_size: int = 1024) -> Iterator[tuple[Record, TokenizedRecord | RecordError]]:
    """`tokenize_record` for many records, encoding a batch at a time (the fast tokenizer runs it in parallel)."""
    yield from _tokenize_many(records, tokenizer, template, num_image_tokens, max_length, batch_size, _assemble)


def compact_records(records: list[Record], tokenizer, template: Template, *, num_image_tokens: ImageTokens,
                    max_length: int, batch_size: int = 1024) -> Iterator[tuple[Record, CompactRecord | RecordError]]:
    """`tokenize_records` without the image expansion (the cache's form); same skips, same truncation."""
    yield from _tokenize_many(records, tokenizer, template, num_image_tokens, max_length, batch_size, _compact)


def _tokenize_many(records, tokenizer, template, num_image_tokens, max_length, batch_size, assemble):
    for start in range(0, len(records), batch_size):
        batch, rendered = records[start : start + batch_size], []
        for record in batch:
            try:
                rendered.append(_render(record, tokenizer, template))
            except RecordError as err:
                rendered.append(err)
        texts = [r.text for r in rendered if isinstance(r, Rendered)]
        encoded = iter(_encode(texts, tokenizer))
        for record, r in zip(batch, rendered, strict=True):
            if isinstance(r, RecordError):
                yield record, r
                continue
            ids, offsets = next(encoded)
            try:
                counts = _image_counts(record, num_image_tokens)
                yield record, assemble(record, r, ids, offsets, tokenizer, counts, max_length)
            except RecordError as err:
                yield record, err


def _render(record: Record, tokenizer, template: Template) -> Rendered:
    try:
        return template.render(record, tokenizer)
    except RecordError:
        raise
    except Exception as err:  # noqa: BLE001 - a tokenizer's own chat template may raise anything
        raise RecordError("tokenization", f"template {template.name!r} cannot render the record: {err}") from err


@dataclass
class CompactRecord:
    """A tokenised record before image expansion: what the cache stores (one placeholder id per image)."""

    ids: np.ndarray  # int64 token ids after truncation, each image still one `<image>` id
    supervised: np.ndarray  # bool per id: trained on (image placeholders never are)
    image_counts: np.ndarray  # int64 tokens each kept image expands to (truncation drops later turns' images)
    turns_kept: int  # assistant turns kept after truncation
    turns_total: int  # assistant turns in the record

    @property
    def num_images(self) -> int:
        """Images the ids hold (the record's first num_images)."""
        return len(self.image_counts)


def expand_images(ids: np.ndarray, supervised: np.ndarray, image_id: int,
                  image_counts: int | Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, labels) as int64 arrays: the k-th image placeholder becomes image_counts[k] image ids (one
    count for all, or each image's own: LLaVA-NeXT counts by size), never supervised.

    The one place image tokens are expanded: the in-memory path calls it at tokenisation, the cache when an item
    is read."""
    ids = np.asarray(ids, dtype=np.int64)
    is_image = ids == image_id
    reps = _token_lengths(is_image, image_counts)
    labels = np.where(np.asarray(supervised, dtype=bool) & ~is_image, ids, IGNORE_INDEX)
    return np.repeat(ids, reps), np.repeat(labels, reps)


def _assemble(record: Record, rendered: Rendered, ids: np.ndarray, offsets: np.ndarray, tokenizer,
              counts: list[int], max_length: int) -> TokenizedRecord:
    compact = _compact(record, rendered, ids, offsets, tokenizer, counts, max_length)
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    input_ids, labels = expand_images(compact.ids, compact.supervised, image_id, compact.image_counts)
    return TokenizedRecord(input_ids.tolist(), labels.tolist(), compact.num_images, compact.turns_kept,
                           compact.turns_total)


def _compact(record: Record, rendered: Rendered, ids: np.ndarray, offsets: np.ndarray, tokenizer,
             counts: list[int], max_length: int) -> CompactRecord:
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    is_image = ids == image_id
    found = int(is_image.sum())
    if found != len(record.images):
        raise RecordError("tokenization", f"the rendered text holds {found} image token(s) for "
                          f"{len(record.images)} image(s)")
    if len(counts) != found:
        raise RecordError("tokenization", f"{len(counts)} image token count(s) for {found} image(s)")
    supervised = _supervised_mask(offsets, rendered.spans)
    lengths = _token_lengths(is_image, counts)
    cut, kept = _truncation_point(offsets, rendered, lengths, max_length)
    if cut == 0:
        images = f"; image tokens: {' + '.join(map(str, counts))}" if counts else ""
        raise RecordError("too_long", f"the image tokens and first exchange need more than {max_length} tokens "
                          f"({int(lengths.sum())} in all{images})")
    sup = supervised[:cut] & ~is_image[:cut]
    if not sup.any():
        raise RecordError("no_supervised_tokens", "no token is supervised after templating and truncation")
    kept_images = int(is_image[:cut].sum())  # truncation may drop later turns' images with their exchanges
    return CompactRecord(ids[:cut], sup, np.asarray(counts[:kept_images], dtype=np.int64), kept,
                         len(rendered.spans))


def encode_prompt(text: str, tokenizer, num_image_tokens: int | Sequence[int]) -> list[int]:
    """Token ids of a generation prompt exactly as training builds a record's: the same BOS rule, one
    tokenisation, each image token expanded in place (to one count, or to each image's own)."""
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    (ids, _), = _encode([text], tokenizer)
    n_images = int((ids == image_id).sum())
    counts = [num_image_tokens] * n_images if isinstance(num_image_tokens, int) else list(num_image_tokens)
    if len(counts) != n_images:
        raise ValueError(f"the prompt holds {n_images} image token(s) for {len(counts)} image(s)")
    return np.repeat(ids, _token_lengths(ids == image_id, counts)).tolist()


def _encode(texts: list[str], tokenizer) -> list[tuple[np.ndarray, np.ndarray]]:
    """(ids, character offsets as (n, 2)) per text, int64; no BOS is added where the template wrote it itself.

    The text between image tokens is tokenised piece by piece, as LLaVA's `tokenizer_image_token` does: a
    sentencepiece tokenizer starts each piece afresh (with its dummy-prefix space), so ids match LLaVA's. Every
    distinct piece of the batch is encoded once (the system prompt before the image is the same in most records),
    in one tokenizer call per BOS rule, and the texts are put back together in numpy, not token by token.
    """
    bos = getattr(tokenizer, "bos_token", None)
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    split = image_id is not None and image_id != tokenizer.unk_token_id
    keys: dict[tuple[str, bool], int] = {}  # (piece, add special tokens) -> its index among the distinct pieces
    layout = []  # per text: (piece index, start offset) of each piece; an image token sits between two pieces
    for text in texts:
        first_special = not (bos and text.startswith(bos))
        parts = _pieces(text) if split else [(0, text)]
        layout.append([(keys.setdefault((chunk, k == 0 and first_special), len(keys)), start)
                       for k, (start, chunk) in enumerate(parts)])
    piece_ids: list = [None] * len(keys)
    piece_offsets: list = [None] * len(keys)
    for add_special in (True, False):
        group = [(n, chunk) for (chunk, special), n in keys.items() if special == add_special]
        if not group:
            continue
        enc = tokenizer([chunk for _, chunk in group], add_special_tokens=add_special, return_offsets_mapping=True,
                        return_attention_mask=False, return_token_type_ids=False, verbose=False)
        for (n, _), ids, offsets in zip(group, enc["input_ids"], enc["offset_mapping"], strict=True):
            piece_ids[n], piece_offsets[n] = ids, offsets
    return _join_pieces(layout, piece_ids, piece_offsets, image_id)


def _join_pieces(layout, piece_ids, piece_offsets, image_id) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each text's pieces laid end to end with an image token between two, offsets moved to the text's own."""
    ids, offsets, shifts, sizes, lengths = [], [], [], [], []
    image_ids = [image_id]
    for pieces in layout:
        length = 0
        for k, (n, start) in enumerate(pieces):
            if k:  # the image token itself: its characters end where the piece starts
                ids.append(image_ids)
                offsets.append([(start - len(IMAGE_TOKEN), start)])
                shifts.append(0)
                sizes.append(1)
            ids.append(piece_ids[n])
            offsets.append(piece_offsets[n])
            shifts.append(start)
            sizes.append(len(piece_ids[n]))
            length += len(piece_ids[n]) + (1 if k else 0)
        lengths.append(length)
    total = sum(lengths)
    flat_ids = np.fromiter(chain.from_iterable(ids), dtype=np.int64, count=total)
    flat_offsets = np.fromiter(chain.from_iterable(chain.from_iterable(offsets)), dtype=np.int64,
                               count=2 * total).reshape(-1, 2)
    shift = np.repeat(np.asarray(shifts, dtype=np.int64), sizes)
    flat_offsets += (shift * (flat_offsets[:, 1] > flat_offsets[:, 0]))[:, None]  # zero-width tokens (BOS) stay
    bounds = np.cumsum(lengths)[:-1]
    return list(zip(np.split(flat_ids, bounds), np.split(flat_offsets, bounds), strict=True))


def _pieces(text: str) -> list[tuple[int, str]]:
    """(start offset, text) of the pieces between image tokens."""
    out, start = [], 0
    for chunk in text.split(IMAGE_TOKEN):
        out.append((start, chunk))
        start += len(chunk) + len(IMAGE_TOKEN)
    return out


def _supervised_mask(offsets: np.ndarray, spans: list[tuple[int, int]]) -> np.ndarray:
    """Per token: its characters overlap a reply span. Zero-width tokens (BOS added by the tokenizer) never do."""
    a, b = offsets[:, 0], offsets[:, 1]
    if not spans:
        return np.zeros(len(a), dtype=bool)
    starts = np.array([s for s, _ in spans], dtype=np.int64)
    ends = np.array([e for _, e in spans], dtype=np.int64)
    k = np.searchsorted(starts, b, side="left") - 1  # the last span starting before this token ends
    return (b > a) & (k >= 0) & (ends[np.maximum(k, 0)] > a)


def _token_lengths(is_image: np.ndarray, counts: int | Sequence[int] | np.ndarray) -> np.ndarray:
    """Expanded length of each raw token: the k-th image token takes counts[k] tokens (or `counts` each when one
    int), text tokens one."""
    lengths = np.ones(len(is_image), dtype=np.int64)
    lengths[is_image] = counts
    return lengths


def _truncation_point(offsets: np.ndarray, rendered: Rendered, lengths: np.ndarray, max_length: int):
    """(number of raw tokens to keep, assistant turns kept): whole exchanges only, never inside images.
    `lengths`: each raw token's expanded length (`_token_lengths`)."""
    cumulative = np.cumsum(lengths)
    if not len(cumulative) or cumulative[-1] <= max_length:
        return len(lengths), len(rendered.spans)
    a, b = offsets[:, 0], offsets[:, 1]
    real = b > a
    for kept in range(len(rendered.exchange_ends), 0, -1):
        after = np.flatnonzero(real & (a >= rendered.exchange_ends[kept - 1]))
        cut = int(after[0]) if len(after) else len(lengths)
        if cut and cumulative[cut - 1] <= max_length:
            return cut, kept
    return 0, 0
