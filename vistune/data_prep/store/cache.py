"""The tokenised cache: a data file tokenised once, on every core, into a memory-mapped Arrow file every rank shares.

Each record is stored compact (int32 ids with one placeholder per image, supervised runs as [start, end) pairs,
each kept image's token count, lengths, image paths, ids); `CachedDataset` expands each image to its own count
when an item is read, so a process holds only
the pages it touches. The key hashes the data file's bytes with everything that changes tokenisation, so a
repeated run, a resume or the doctor reuses it and anything else builds its own. Skipped records live beside it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vistune.data_prep.records import Record
from vistune.data_prep.records.skips import Skip, SkipLog
from vistune.data_prep.text.templates import Template
from vistune.data_prep.text.tokenize import ImageTokens

log = logging.getLogger(__name__)

CACHE_VERSION = 3  # bump when the stored layout or the tokenisation rules change (3: per-image token counts)
INFO_FILE = "info.json"


@dataclass
class CacheKey:
    """Everything that decides a cached record's contents."""

    data: str  # blake2b of the data file's bytes (or of a dataset directory's files)
    tokenizer: str  # fingerprint of the tokenizer (vocabulary, merges, added tokens, specials)
    template: str  # the template's name and definition
    max_length: int  # tokens per sample, image tokens included
    image_tokens: str  # the image-token rule ("fixed:576", "anyres:<arch>:<hash>"): decides truncation, too_long
    fmt: str  # the reader's format argument
    version: str  # vistune version + CACHE_VERSION

    def digest(self) -> str:
        return hashlib.blake2b(json.dumps(asdict(self), sort_keys=True).encode(), digest_size=12).hexdigest()


def default_cache_dir() -> Path:
    return Path(os.environ.get("VISTUNE_CACHE", Path.home() / ".cache" / "vistune")) / "tokenized"


def hash_path(path: str | Path, chunk: int = 8 << 20) -> str:
    """blake2b of a file's bytes (a directory: of its files' names and bytes, in sorted order)."""
    path = Path(path)
    h = hashlib.blake2b(digest_size=16)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(str(f.relative_to(path)).encode() if path.is_dir() else b"")
        with open(f, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    return h.hexdigest()


def content_hash(path: str | Path, cache_dir: Path) -> str:
    """`hash_path`, remembered per (path, size, mtime_ns, inode) in cache_dir/hashes.json so a warm start does
    not read a 1 GB file again; any change to the file's stat hashes it afresh."""
    path = Path(path).resolve()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    stamp = [[str(f), f.stat().st_size, f.stat().st_mtime_ns, f.stat().st_ino] for f in files]
    memo_file = cache_dir / "hashes.json"
    try:
        memo = json.loads(memo_file.read_text())
    except (OSError, ValueError):
        memo = {}
    if memo.get(str(path), {}).get("stamp") == stamp:
        return memo[str(path)]["digest"]
    digest = hash_path(path)
    memo[str(path)] = {"stamp": stamp, "digest": digest}
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = memo_file.with_name(f"hashes.json.tmp{os.getpid()}")
    tmp.write_text(json.dumps(memo))
    os.replace(tmp, memo_file)  # concurrent writers: the last one wins, every version is valid
    return digest


def tokenizer_fingerprint(tokenizer, with_chat_template: bool = True) -> str:
    h = hashlib.blake2b(digest_size=12)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    h.update(backend.to_str().encode() if backend is not None else repr(sorted(tokenizer.get_vocab().items())).encode())
    h.update(repr([type(tokenizer).__name__, tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token,
                   getattr(tokenizer, "chat_template", None) if with_chat_template else None, len(tokenizer)]).encode())
    return h.hexdigest()


def image_rule(num_image_tokens: ImageTokens, rule: str | None = None) -> str:
    """The cache key's name for how images are counted: `rule` when given (a per-image count must name its
    rule, see `anyres_rule`), else "fixed:N"."""
    if rule is not None:
        return rule
    if isinstance(num_image_tokens, int):
        return f"fixed:{num_image_tokens}"
    raise ValueError("a per-image token count needs image_rule naming it (the cache key must tell archs apart)")


def anyres_rule(processor, image_root: str | Path) -> str:
    """The image-token rule of an AnyRes processor: its arch and everything its count reads (image processor
    settings, patch size, feature strategy), plus the image root the sizes are read under."""
    ip = processor.image_processor
    parts = [type(processor).__name__, ip.to_json_string(), str(Path(image_root).resolve())] + [
        repr(getattr(processor, a, None)) for a in ("patch_size", "vision_feature_select_strategy",
                                                     "num_additional_image_tokens", "num_image_tokens",
                                                     "vision_aspect_ratio")]
    digest = hashlib.blake2b("\n".join(parts).encode(), digest_size=12).hexdigest()
    return f"anyres:{type(processor).__name__}:{digest}"


def cache_key(path, tokenizer, template: Template, *, num_image_tokens: ImageTokens, max_length: int,
              fmt: str = "auto", cache_dir: str | Path | None = None, image_tokens_rule: str | None = None) -> CacheKey:
    from vistune import __version__

    return CacheKey(data=content_hash(path, Path(cache_dir or default_cache_dir())),
                    tokenizer=tokenizer_fingerprint(tokenizer, template.jinja is None), template=f"{template.name}:{template!r}", max_length=max_length,
                    image_tokens=image_rule(num_image_tokens, image_tokens_rule), fmt=fmt, version=f"{__version__}+{CACHE_VERSION}")


# -- building ------------------------------------------------------------------------------------------------------

def ensure_cache(path: str | Path, tokenizer, template: Template, *, num_image_tokens: ImageTokens, max_length: int,
                 fmt: str = "auto", cache_dir: str | Path | None = None, workers: int | None = None,
                 progress: bool = False, image_tokens_rule: str | None = None) -> Path:
    """The cache directory for this data + tokenisation, built now if no earlier run built it.

    `num_image_tokens` is one count or (AnyRes) a function of the record evaluated at build time (it reads image
    headers); the latter needs `image_tokens_rule` (`anyres_rule`) so the key never mixes archs.

    Under torch.distributed the local rank 0 of each node builds while the others wait at a barrier; a file
    lock and an atomic rename keep two independent runs from clobbering each other (the second waits, then
    reuses)."""
    key = cache_key(path, tokenizer, template, num_image_tokens=num_image_tokens, max_length=max_length, fmt=fmt,
                    cache_dir=cache_dir, image_tokens_rule=image_tokens_rule)
    target = Path(cache_dir or default_cache_dir()) / key.digest()
    distributed = _dist_initialized()
    if not distributed or int(os.environ.get("LOCAL_RANK", 0)) == 0:
        _build_locked(target, key, path, tokenizer, template, num_image_tokens, max_length, fmt, workers, progress)
    if distributed:
        import torch.distributed as dist

        dist.barrier()
        if not (target / INFO_FILE).exists():  # a node without the builder's file system: build its own
            _build_locked(target, key, path, tokenizer, template, num_image_tokens, max_length, fmt, workers, progress)
    return target


def _dist_initialized() -> bool:
    try:
        import torch.distributed as dist

        return dist.is_available() and dist.is_initialized()
    except ImportError:
        return False


def _build_locked(target: Path, key: CacheKey, path, tokenizer, template, n_img, max_length, fmt, workers, progress):
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(target.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent run building the same cache finishes first
        if (target / INFO_FILE).exists():
            return
        for stale in target.parent.glob(f"{target.name}.tmp*"):  # left by a build that was killed (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
        tmp.mkdir()
        start = time.time()
        from vistune.data_prep.store.cache_build import build_in_child

        info = build_in_child(tmp, path, tokenizer, template, num_image_tokens=n_img, max_length=max_length, fmt=fmt,
                           workers=workers, progress=progress)
        info.update(key=asdict(key), seconds=round(time.time() - start, 1), pid=os.getpid())
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=1))
        os.replace(tmp, target)
        with open(target.parent / "builds.log", "a", encoding="utf-8") as f:  # one line per build, for the curious
            f.write(json.dumps({"cache": target.name, "source": str(path), "records": info["records"],
                                "seconds": info["seconds"], "pid": os.getpid()}) + "\n")
        log.info("tokenised cache for %s: %d records in %.0f s -> %s", path, info["records"], info["seconds"], target)


# -- reading -------------------------------------------------------------------------------------------------------

class CachedTable:
    """The memory-mapped cache: per-record compact ids, supervision and metadata without copying them."""

    def __init__(self, directory: str | Path):
        import pyarrow as pa

        self.directory = Path(directory)
        self.info = json.loads((self.directory / INFO_FILE).read_text())
        from vistune.data_prep.store.cache_build import TABLE_FILE

        self._source = pa.memory_map(str(self.directory / TABLE_FILE), "r")
        reader = pa.ipc.open_file(self._source)
        self.batches = [reader.get_batch(i) for i in range(reader.num_record_batches)]
        sizes = np.array([b.num_rows for b in self.batches], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(sizes)])
        self.num_rows = int(self.starts[-1])
        self._lengths = None

    def __len__(self) -> int:
        return self.num_rows

    def __getstate__(self) -> dict:  # a spawned DataLoader worker maps the file again instead of copying it
        return {"directory": str(self.directory)}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["directory"])

    def _locate(self, i: int):
        if not 0 <= i < self.num_rows:
            raise IndexError(i)
        b = int(np.searchsorted(self.starts, i, side="right") - 1)
        return self.batches[b], i - int(self.starts[b])

    def compact(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids int32 with one placeholder per kept image, supervised runs [start, end, ...], each kept image's
        token count) of row i (zero-copy)."""
        batch, j = self._locate(i)
        return (_list_row(batch.column("input_ids"), j), _list_row(batch.column("supervised"), j),
                _list_row(batch.column("image_counts"), j))

    def meta(self, i: int) -> dict:
        batch, j = self._locate(i)
        return {"id": batch.column("id")[j].as_py(), "images": batch.column("images")[j].as_py(),
                "image_root": batch.column("image_root")[j].as_py(),
                "turns_kept": batch.column("turns_kept")[j].as_py(), "turns_total": batch.column("turns_total")[j].as_py()}

    def column(self, name: str) -> np.ndarray:
        """A scalar column for every row (lengths, turns) as one numpy array (4 bytes a row for int32)."""
        return np.concatenate([_view(b.column(name)) for b in self.batches]) if self.batches else np.zeros(0)

    def num_images(self) -> np.ndarray:
        """Images each row's ids hold (truncation may drop a record's later images)."""
        return np.concatenate([np.diff(_offsets(b.column("image_counts"))) for b in self.batches]) \
            if self.batches else np.zeros(0, dtype=np.int32)

    def dropped_images(self) -> list[dict]:
        """{"position", "id", "images", "image_root"} of each record the tokeniser skipped (the doctor checks them)."""
        from vistune.data_prep.store.cache_build import DROPPED_FILE

        lines = (self.directory / DROPPED_FILE).read_text().splitlines()
        return [json.loads(x) for x in lines if x.strip()]

    def skips(self) -> list[Skip]:
        """The records the build skipped (read and tokenise stages), in the order the in-memory path skips them."""
        from vistune.data_prep.store.cache_build import SKIPS_FILE

        return list(SkipLog.read_jsonl(self.directory / SKIPS_FILE))


def _list_row(column, j: int) -> np.ndarray:
    offsets = _offsets(column)
    return _view(column.values)[offsets[j]:offsets[j + 1]]


def _view(array) -> np.ndarray:
    """A primitive Arrow array without nulls as a numpy view of its mapped buffer: zero-copy, and without the
    pandas import (~30 MB per process) that pyarrow's `to_numpy` makes on its first call."""
    dtype = np.dtype(str(array.type))
    return np.frombuffer(array.buffers()[1], dtype=dtype, count=len(array), offset=array.offset * dtype.itemsize)


def _offsets(column) -> np.ndarray:
    """The len + 1 offsets of a list column into its values, as a numpy view."""
    return np.frombuffer(column.buffers()[1], dtype=np.int32, count=len(column) + 1, offset=column.offset * 4)


def expand_row(ids: np.ndarray, runs: np.ndarray, image_counts: np.ndarray, image_id: int) -> tuple:
    """Compact row -> (input_ids, labels) exactly as `tokenize_records` produces them (each image expanded to
    the count stored for it at build time)."""
    from vistune.data_prep.text.tokenize import expand_images

    supervised = np.zeros(len(ids), dtype=bool)
    for a, b in zip(runs[0::2], runs[1::2], strict=True):
        supervised[a:b] = True
    return expand_images(ids, supervised, image_id, image_counts)


def record_of(meta: dict) -> Record:
    """A Record carrying what the image loader needs (id, images, image root); the turns stay in the cache."""
    return Record(id=meta["id"], images=meta["images"], turns=[], image_root=meta["image_root"])


__all__ = ["CacheKey", "CachedTable", "anyres_rule", "cache_key", "content_hash", "default_cache_dir", "ensure_cache", "expand_row",
           "hash_path", "record_of"]
