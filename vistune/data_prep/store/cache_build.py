"""Building the tokenised cache: the data file parsed and tokenised on every core into one Arrow file.

Workers take chunks of the raw items (forked: the items are inherited, never pickled); this process drops later
duplicate ids in file order exactly as the reader does, and writes the records, the skips and, for the doctor,
the images of records the tokeniser skipped.
"""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
from pathlib import Path

import numpy as np

from vistune.data_prep.records import RecordError
from vistune.data_prep.records.skips import SkipLog
from vistune.data_prep.text.templates import Template
from vistune.data_prep.text.tokenize import ImageTokens, compact_records

TABLE_FILE = "records.arrow"
SKIPS_FILE = "skipped.jsonl"
DROPPED_FILE = "dropped_images.jsonl"
CHUNK = 4096  # records per worker task (and per Arrow record batch)


_JOB: dict = {}  # what forked workers read (raw items, tokenizer, ...): inherited, never pickled


def build_in_child(*args, **kwargs) -> dict:
    """`build_cache` in a forked process: the builder's peak memory (the whole JSON parsed) never stays in ours."""
    parent, child = multiprocessing.get_context("fork").Pipe(duplex=False)
    proc = multiprocessing.get_context("fork").Process(target=_child_build, args=(child, args, kwargs))
    proc.start()
    child.close()
    try:
        ok, value = parent.recv()
    except EOFError:
        ok, value = False, RuntimeError(f"the cache builder died (exit code {proc.join() or proc.exitcode})")
    proc.join()
    if not ok:
        raise value
    return value


def _child_build(conn, args, kwargs) -> None:
    # This process lives for one build and makes no reference cycles worth collecting, while the cyclic collector
    # would walk the parsed file and every offset tuple the tokenizer returns (~10% of the build) and, in forked
    # workers, copy the pages it walks.
    gc.disable()
    try:
        conn.send((True, build_cache(*args, **kwargs)))
    except BaseException as err:  # noqa: BLE001 - handed to the parent, which raises it
        conn.send((False, err))
    finally:
        conn.close()


def build_cache(out: Path, path, tokenizer, template: Template, *, num_image_tokens: ImageTokens, max_length: int,
                fmt: str = "auto", workers: int | None = None, progress: bool = False) -> dict:
    """Reads `path`, parses and tokenises its records on `workers` processes, writes the Arrow table and skips.

    Same records, order, skips and reasons as load_records + tokenize_records: workers parse and tokenise
    chunks; this process then drops later duplicates of an id in file order, as the reader does."""
    import pyarrow as pa

    from vistune.data_prep.records.readers import iter_raw

    source = str(path)
    items = list(iter_raw(Path(path), fmt))
    chunks = [(i, min(i + CHUNK, len(items))) for i in range(0, len(items), CHUNK)]
    workers = max(1, min(workers or os.cpu_count() or 1, len(chunks)))
    _JOB.update(items=items, fmt=fmt, tokenizer=tokenizer, template=template, n_img=num_image_tokens,
                max_length=max_length)
    bar = _progress(len(items), "tokenising") if progress else None
    read_skips, token_skips, dropped, seen, kept = SkipLog(), SkipLog(), [], set(), 0
    pool = multiprocessing.get_context("fork").Pool(workers) if workers > 1 else None
    try:
        with pa.OSFile(str(out / TABLE_FILE), "wb") as sink, pa.ipc.new_file(sink, _schema()) as writer:
            results = pool.imap(_work_chunk, chunks) if pool else map(_work_chunk, chunks)
            for batch, outcomes in results:
                keep = []
                for index, rid, images, root, err in outcomes:
                    if err is not None and err[3] == "read":
                        read_skips.add(id=rid, source=source, problem=err[0], reason=err[1], stage="read",
                                       index=index, field=err[2])
                        continue
                    if rid in seen:
                        problem = f"id {rid!r} was already used by an earlier record"
                        read_skips.add(id=_raw_id_of(items[index]), source=source, problem="duplicate_id",
                                       reason=problem, stage="read", index=index, field="id")
                        if err is None:
                            keep.append(False)
                        continue
                    seen.add(rid)
                    if err is not None:
                        token_skips.add(id=rid, source=source, problem=err[0], reason=err[1], stage="tokenize",
                                        field=err[2])
                        dropped.append({"position": index, "id": rid, "images": images, "image_root": root})
                        continue
                    keep.append(True)
                batch = batch.filter(pa.array(keep, type=pa.bool_())) if not all(keep) else batch
                if batch.num_rows:
                    writer.write_batch(batch)
                kept += batch.num_rows
                if bar:
                    bar.update(len(outcomes))
    finally:
        _JOB.clear()
        if pool:
            pool.close()
            pool.join()
        if bar:
            bar.close()
    _joined(read_skips, token_skips).write_jsonl(out / SKIPS_FILE)
    (out / DROPPED_FILE).write_text("".join(json.dumps(d) + "\n" for d in dropped))
    skipped = len(read_skips) + len(token_skips)
    per_image = num_image_tokens if isinstance(num_image_tokens, int) else "per image"
    return {"source": source, "records": kept, "skipped": skipped, "num_image_tokens": per_image}


def _joined(first: SkipLog, second: SkipLog) -> SkipLog:
    log_ = SkipLog()
    log_.items = [*first.items, *second.items]
    return log_


def _raw_id_of(item) -> str:
    from vistune.data_prep.records.readers import raw_id

    return raw_id(item[1], item[0])


def _work_chunk(span: tuple[int, int]):
    """One worker task: items[a:b] parsed and tokenised -> (Arrow batch of the tokenised records, outcomes).

    outcomes: per item (index, id, images, image_root, None | (problem, reason, field, stage)); the batch holds
    a row for each outcome without error, in order."""
    import pyarrow as pa

    from vistune.data_prep.records.readers import raw_id, read_one

    job = _JOB
    outcomes, records, where = [], [], []
    for index, raw, implicit, error in job["items"][span[0]:span[1]]:
        try:
            record = read_one(raw, index, implicit, error, job["fmt"])
        except RecordError as err:
            outcomes.append((index, raw_id(raw, index), None, None, (err.problem, str(err), err.field, "read")))
            continue
        where.append(len(outcomes))
        outcomes.append((index, record.id, record.images, record.image_root, None))
        records.append(record)
    rows = {k: [] for k in _schema().names}
    pairs = compact_records(records, job["tokenizer"], job["template"], num_image_tokens=job["n_img"],
                            max_length=job["max_length"])
    for k, (record, tok) in zip(where, pairs, strict=True):
        index = outcomes[k][0]
        if isinstance(tok, RecordError):
            outcomes[k] = (*outcomes[k][:4], (tok.problem, str(tok), tok.field, "tokenize"))
            continue
        rows["id"].append(record.id)
        rows["images"].append(record.images)
        rows["image_root"].append(record.image_root)
        rows["input_ids"].append(tok.ids)
        rows["supervised"].append(_runs(tok.supervised))
        rows["image_counts"].append(tok.image_counts.tolist())
        rows["length"].append(len(tok.ids) + int(tok.image_counts.sum()) - tok.num_images)
        rows["turns_kept"].append(tok.turns_kept)
        rows["turns_total"].append(tok.turns_total)
        rows["position"].append(index)
    rows["input_ids"] = _int32_lists(rows["input_ids"])  # one copy of the chunk's ids, not one list per record
    return pa.RecordBatch.from_pydict(rows, schema=_schema()), outcomes


def _int32_lists(rows: list[np.ndarray]):
    """A list<int32> Arrow array of `rows`, built from their concatenation (pa.array converts row by row)."""
    import pyarrow as pa

    offsets = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum([len(r) for r in rows], out=offsets[1:])
    values = np.concatenate(rows).astype(np.int32) if rows else np.zeros(0, dtype=np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))


def _progress(total: int, what: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=what, unit="rec", mininterval=2.0)


def _schema():
    import pyarrow as pa

    return pa.schema([
        ("id", pa.string()),
        ("images", pa.list_(pa.string())),
        ("image_root", pa.string()),
        ("input_ids", pa.list_(pa.int32())),  # one IMAGE_TOKEN id per image
        ("supervised", pa.list_(pa.int32())),  # [start, end) runs of supervised positions in input_ids
        ("image_counts", pa.list_(pa.int32())),  # tokens each kept image expands to (fixed, or by size: AnyRes)
        ("length", pa.int32()),  # tokens after image expansion
        ("turns_kept", pa.int16()),
        ("turns_total", pa.int16()),
        ("position", pa.int32()),  # the record's index in the data file
    ])


def _runs(mask: list[bool]) -> list[int]:
    """[start, end, start, end, ...] of the True runs of `mask`."""
    m = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])  # edges of each run of True
    edges = np.flatnonzero(m[1:] != m[:-1])
    return edges.tolist()
