"""The data doctor over WebDataset shards: every sample's JSON, tokenisation and images, one shard per core."""

from __future__ import annotations

import io
import json
import multiprocessing
from pathlib import Path

from tqdm import tqdm

from vistune.data_prep.images.load import decode_image
from vistune.data_prep.records import RecordError
from vistune.data_prep.records.readers import raw_id, read_one
from vistune.data_prep.records.skips import SkipLog
from vistune.data_prep.store.shards import read_index
from vistune.data_prep.text.tokenize import tokenize_records

_JOB: dict = {}  # inherited by forked workers


def diagnose_shards(directory: Path, text_side, template, max_length: int, workers: int, progress: bool, report_cls):
    shards = read_index(directory)
    _JOB.update(directory=directory, shards=shards, tokenizer=text_side.tokenizer, template=template,
                n_img=text_side.num_image_tokens, max_length=max_length)
    starts, total = [], 0
    for s in shards:
        starts.append(total)
        total += len(s["samples"])
    errors, warnings = SkipLog(), SkipLog()
    report = report_cls(str(directory), total, errors, warnings)
    jobs = list(zip(range(len(shards)), starts, strict=True))
    bar = tqdm(total=total, desc="samples", unit="rec", mininterval=2.0, disable=not progress)
    try:
        if workers > 1 and len(jobs) > 1:
            with multiprocessing.get_context("fork").Pool(min(workers, len(jobs))) as pool:
                results = list(_tracked(pool.imap(_check_shard, jobs), bar))
        else:
            results = list(_tracked(map(_check_shard, jobs), bar))
    finally:
        _JOB.clear()
        bar.close()
    for outcomes in results:
        for index, rid, problem, detail in outcomes:
            if problem is not None:
                stage = "read" if detail["stage"] == "read" else "validate"
                errors.add(id=rid, source=str(directory), problem=problem, reason=detail["reason"], stage=stage,
                           index=index, field=detail["field"])
                continue
            if detail["kept"] < detail["total"]:
                warnings.add(id=rid, source=str(directory), problem="truncated", stage="validate",
                             reason=f"{detail['kept']} of {detail['total']} exchanges fit in {max_length} tokens")
            report.good_ids.append(rid)
            report.token_lengths.append(detail["length"])
            report.images_per_record[detail["images"]] += 1
    return report


def _tracked(results, bar):
    for r in results:
        bar.update(len(r))
        yield r


def _check_shard(job: tuple[int, int]) -> list:
    """[(index, id, problem or None, detail)] for every sample of one shard, in order."""
    k, start = job
    shard = _JOB["shards"][k]
    out, records, where = [], [], []
    with open(Path(_JOB["directory"]) / shard["file"], "rb") as f:
        def member(offset, size):
            f.seek(offset)
            return f.read(size)

        for j, members in enumerate(shard["samples"]):
            index, raw = start + j, None
            byname = {name.split(".", 1)[1]: (o, n) for name, o, n in members}
            try:
                raw = json.loads(member(*byname["json"]))
                record = read_one(raw, index, False, None)
                for name in record.images:
                    if name not in byname:
                        raise RecordError("missing_image", f"{shard['file']}: sample {members[0][0]} has no {name}")
                    decode_image(io.BytesIO(member(*byname[name])), f"{shard['file']}:{members[0][0]}/{name}")
            except (RecordError, KeyError, ValueError) as err:
                stage = "read" if not isinstance(err, RecordError) or err.problem not in _IMAGE_PROBLEMS else "image"
                err = err if isinstance(err, RecordError) else RecordError("bad_json", f"{shard['file']}: {err}")
                out.append((index, raw_id(raw, index) if stage == "read" else raw.get("id", f"#{index}"),
                            err.problem, {"stage": stage, "reason": str(err), "field": err.field}))
                continue
            where.append(len(out))
            out.append((index, record.id, None, None))
            records.append(record)
    tokenized = tokenize_records(records, _JOB["tokenizer"], _JOB["template"], num_image_tokens=_JOB["n_img"],
                                 max_length=_JOB["max_length"])
    for pos, (record, tok) in zip(where, tokenized, strict=True):
        if isinstance(tok, RecordError):
            out[pos] = (out[pos][0], record.id, tok.problem, {"stage": "tokenize", "reason": str(tok), "field": tok.field})
        else:
            out[pos] = (out[pos][0], record.id, None, {"kept": tok.turns_kept, "total": tok.turns_total,
                                                       "length": len(tok.input_ids), "images": len(record.images)})
    return out


_IMAGE_PROBLEMS = ("missing_image", "empty_image", "corrupt_image", "image_too_large")
