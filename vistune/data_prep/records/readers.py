"""Reading a dataset from disk: LLaVA JSON / JSONL, `messages` JSON / JSONL, and Hugging Face datasets dirs.

`load_records` never raises for one bad record: it skips it and reports it (file, index, id, field,
reason) to a `SkipLog`. Only a file that cannot be read at all raises, with the file named.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vistune.data_prep.records.parse import parse_record
from vistune.data_prep.records.record import Record, RecordError
from vistune.data_prep.records.skips import SkipLog

FORMATS = ("auto", "llava", "messages", "jsonl", "hf")


class DataFileError(RuntimeError):
    """A whole data file or directory cannot be read."""


def checked_source(path: str | Path, fmt: str) -> Path:
    """`path` as a Path, once its format name is known and it exists (a one-line error otherwise)."""
    path = Path(path)
    if fmt not in FORMATS:
        raise ValueError(f"unknown data format {fmt!r}: use one of {', '.join(FORMATS)}")
    if not path.exists():
        raise DataFileError(f"{path}: no such file or directory")
    return path


def load_records(path: str | Path, *, fmt: str = "auto", skips: SkipLog | None = None,
                 dedupe_ids: bool = True) -> list[Record]:
    """All good records of `path`; bad ones go to `skips` (stage "read")."""
    path = checked_source(path, fmt)
    skips = skips if skips is not None else SkipLog()
    records, seen = [], set()
    for index, raw, implicit, error in iter_raw(path, fmt):
        try:
            record = read_one(raw, index, implicit, error, fmt)
            if dedupe_ids and record.id in seen:
                raise duplicate_error(record)
        except RecordError as err:
            skips.add(id=raw_id(raw, index), source=str(path), problem=err.problem, reason=str(err),
                      stage="read", index=index, field=err.field)
            continue
        seen.add(record.id)
        records.append(record)
    return records


def read_one(raw: Any, index: int, implicit: bool, error: RecordError | None, fmt: str = "auto") -> Record:
    """One raw item of `iter_raw` -> Record, or RecordError (the reader's checks, not the duplicate-id one)."""
    if error is not None:
        raise error
    style = fmt if fmt in ("llava", "messages") else "auto"
    record = parse_record(raw, index, style, implicit_images=implicit)
    if isinstance(raw, dict) and raw.get("_image_root"):
        record.image_root = raw["_image_root"]
        record.extra.pop("_image_root", None)
    return record


def duplicate_error(record: Record) -> RecordError:
    return RecordError("duplicate_id", f"id {record.id!r} was already used by an earlier record", "id")


def iter_raw(path: Path, fmt: str = "auto") -> Iterator[tuple[int, Any, bool, RecordError | None]]:
    """(index, raw record, images-may-be-untagged, error) for each record of a file or dataset dir."""
    if path.is_dir() or path.suffix == ".parquet" or fmt == "hf":
        for index, row in enumerate(_hf_rows(path)):
            yield index, row, True, None
        return
    text = _read_text(path)
    if fmt == "jsonl" or path.suffix == ".jsonl" or not text.lstrip().startswith("["):
        for index, raw, error in _jsonl(text, path):
            yield index, raw, False, error
        return
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataFileError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, list):
        raise DataFileError(f"{path}: expected a JSON list of records, found {type(data).__name__}")
    for index, raw in enumerate(data):
        yield index, raw, False, None


def _read_text(path: Path) -> str:
    try:
        # surrogateescape keeps invalid UTF-8 bytes as lone surrogates; the parser rejects those records only
        return path.read_bytes().decode("utf-8", errors="surrogateescape")
    except OSError as err:
        raise DataFileError(f"{path}: cannot read ({err})") from err


def _jsonl(text: str, path: Path) -> Iterator[tuple[int, Any, RecordError | None]]:
    index = 0
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield index, json.loads(line), None
        except json.JSONDecodeError as err:
            yield index, None, RecordError("bad_json", f"{path.name} line {line_no}: invalid JSON ({err.msg})")
        index += 1


def raw_id(raw: Any, index: int) -> str:
    if isinstance(raw, dict) and isinstance(raw.get("id"), (str, int)):
        return str(raw["id"])
    return f"#{index}"


# -- Hugging Face datasets ---------------------------------------------------------------------------------

_IMAGE_COLUMNS = ("images", "image")


def _hf_rows(path: Path) -> Iterator[dict]:
    """Rows as dicts with image columns turned into paths (embedded image bytes are extracted once)."""
    table = _hf_table(path)
    image_dir = _extract_dir(path)
    for row in table:
        for col in _IMAGE_COLUMNS:
            if col in row and row[col] is not None:
                row[col], extracted = _image_paths(row[col], image_dir)
                if extracted:
                    row["_image_root"] = str(image_dir)
        yield row


def _hf_table(path: Path) -> Iterator[dict]:
    try:
        if path.is_dir() and not list(path.glob("*.parquet")):
            import datasets

            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                ds = ds["train"] if "train" in ds else next(iter(ds.values()))
            for col in _IMAGE_COLUMNS:
                if col in ds.column_names:
                    feature = ds.features[col]
                    inner = getattr(feature, "feature", feature)
                    if type(inner).__name__ == "Image":
                        ds = ds.cast_column(col, _undecoded(feature))
            return iter(ds)
        import pyarrow.parquet as pq

        files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
        return (row for f in files for row in pq.read_table(f).to_pylist())
    except Exception as err:  # noqa: BLE001 - any failure here means the whole dataset is unreadable
        raise DataFileError(f"{path}: cannot read as a Hugging Face dataset ({err})") from err


def _undecoded(feature):
    import datasets

    if isinstance(feature, datasets.Image):
        return datasets.Image(decode=False)
    return datasets.List(datasets.Image(decode=False))


def _extract_dir(path: Path) -> Path:
    from vistune.model.tiny.parts import tiny_cache_dir

    key = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    return tiny_cache_dir() / "hf-images" / key


def _image_paths(value: Any, image_dir: Path) -> tuple[Any, bool]:
    """An image cell (path, {bytes, path}, or a list of them) -> paths; bytes are written under image_dir."""
    if isinstance(value, list):
        pairs = [_image_paths(v, image_dir) for v in value]
        return [p for p, _ in pairs], any(e for _, e in pairs)
    if isinstance(value, dict):
        data, name = value.get("bytes"), value.get("path")
        if data:
            digest = hashlib.sha1(data).hexdigest()[:20]
            target = image_dir / (digest + (Path(name).suffix if name else ".img"))
            if not target.exists():
                image_dir.mkdir(parents=True, exist_ok=True)
                tmp = target.with_suffix(target.suffix + f".tmp{os.getpid()}")
                tmp.write_bytes(data)
                os.replace(tmp, target)
            return target.name, True
        return name, False
    return value, False
