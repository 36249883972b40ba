"""The data doctor behind `vistune data validate`: every problem a record can have, found before training.

It runs the same code training runs (readers, image loading, templating, tokenisation) and reports a count
per problem with the first record ids, plus token-length and images-per-record histograms. `--fix` keeps
only the records with no error; a literal `<image>` where no image belongs (in a reply, the system prompt,
or a record whose tags and images disagree) is never guessed at: such records are dropped.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from vistune.data_prep.batching.preference import is_preference_data
from vistune.data_prep.batching.rl_prompts import is_question_data
from vistune.data_prep.images import load_image
from vistune.data_prep.records import PROBLEMS, Record, RecordError
from vistune.data_prep.records.readers import load_records
from vistune.data_prep.records.skips import SkipLog
from vistune.data_prep.text.templates import get_template
from vistune.data_prep.text.tokenize import tokenize_records

WARNINGS = {"truncated": "later exchanges do not fit in max_length; training drops them"}
LENGTH_BINS = (64, 128, 256, 512, 1024, 2048, 4096, 8192)


@dataclass
class Report:
    data: str  # the dataset checked
    total: int  # records in the source, good or bad
    errors: SkipLog  # one entry per bad record (its first problem)
    warnings: SkipLog  # records that are usable but not as written (e.g. truncated)
    token_lengths: list[int] = field(default_factory=list)  # per good record, after truncation
    images_per_record: Counter = field(default_factory=Counter)
    good: list[Record] = field(default_factory=list)  # the records --fix keeps (only when asked: keep_records)
    good_ids: list[str] = field(default_factory=list)  # ids of the records without errors

    @property
    def ok(self) -> bool:
        return len(self.errors) == 0

    def to_dict(self, first: int = 10) -> dict:
        return {
            "data": self.data, "records": self.total, "good": len(self.good_ids), "bad": len(self.errors),
            "errors": _grouped(self.errors, PROBLEMS, first), "warnings": _grouped(self.warnings, WARNINGS, first),
            "token_length_histogram": length_histogram(self.token_lengths),
            "images_per_record": {str(k): v for k, v in sorted(self.images_per_record.items())},
        }

    def format(self, first: int = 5) -> str:
        d = self.to_dict(first)
        lines = [f"{self.data}: {d['records']} records, {d['good']} good, {d['bad']} with errors"]
        for kind in ("errors", "warnings"):
            for problem, info in d[kind].items():
                ids = ", ".join(str(x["id"]) for x in info["first"])
                lines.append(f"  {kind[:-1]:7s} {problem:20s} {info['count']:6d}  e.g. {ids}")
                lines.append(f"          {info['first'][0]['reason']}")
        lines.append("token lengths:     " + "  ".join(f"{k}: {v}" for k, v in d["token_length_histogram"].items()))
        lines.append("images per record: " + "  ".join(f"{k}: {v}" for k, v in d["images_per_record"].items()))
        return "\n".join(lines)


def diagnose(data: str | Path, *, image_root: str | Path | None = None, model: str = "tiny",
             template: str | None = None, max_length: int = 2048, fmt: str = "auto", workers: int | None = None,
             text_side=None, arch: str = "llava", keep_records: bool = False, cache_dir: str | Path | None = None,
             progress: bool = False, rl: bool = False) -> Report:
    """Checks every record of `data`; `image_root` defaults to the data file's directory. `arch` llava_next /
    llava_onevision counts each image's tokens by its size, as training will.

    Tokenisation goes through the tokenised cache (built on every core, or reused from training) unless
    `keep_records` asks for the records themselves (--fix writes them back). `rl` reads the records as stage rl's
    prompts with reference answers (`{image, question, answer}` rows are read so without it)."""
    from vistune.data_prep.text.text_side import load_text_side

    data = Path(data)
    root = Path(image_root) if image_root else (data if data.is_dir() else data.parent)
    text_side = text_side or load_text_side(model, arch)
    chosen = get_template(template or text_side.template)
    workers = workers or os.cpu_count() or 1
    if data.is_dir() and any(data.glob("*.tar")):
        from vistune.data_prep.doctor.shards import diagnose_shards
        from vistune.data_prep.store.stream import refuse_anyres

        refuse_anyres(text_side.processor, data)
        return diagnose_shards(data, text_side, chosen, max_length, workers, progress, Report)
    errors, warnings = SkipLog(), SkipLog()
    if rl or is_question_data(data, fmt):  # rl prompts, like pairs, are checked in memory
        return diagnose_rl_prompts(data, root, errors, template=template, max_length=max_length, workers=workers,
                                   text_side=text_side)
    if is_preference_data(data, fmt):  # pairs are checked in memory (the cache holds conversations)
        return diagnose_pairs(data, root, errors, warnings, template=template, max_length=max_length, fmt=fmt,
                              workers=workers, text_side=text_side)
    if not keep_records:
        return _diagnose_cached(data, root, text_side, chosen, max_length, fmt, workers, cache_dir, progress)
    records = load_records(data, fmt=fmt, skips=errors)
    report = Report(str(data), len(records) + len(errors), errors, warnings)
    bad_images = check_images(records, root, workers, progress)
    tokenized = tokenize_records(records, text_side.tokenizer, chosen,
                                 num_image_tokens=text_side.image_tokens(root), max_length=max_length)
    for record, tok in tokenized:
        problem = bad_images.get(record.id) or (tok if isinstance(tok, RecordError) else None)
        if problem is not None:
            errors.add(id=record.id, source=str(data), problem=problem.problem, reason=str(problem),
                       stage="validate", field=problem.field)
            continue
        if tok.truncated:
            warnings.add(id=record.id, source=str(data), problem="truncated", stage="validate",
                         reason=f"{tok.turns_kept} of {tok.turns_total} exchanges fit in {max_length} tokens")
        report.good.append(record)
        report.good_ids.append(record.id)
        report.token_lengths.append(len(tok.input_ids))
        report.images_per_record[len(record.images)] += 1
    return report


def diagnose_pairs(data: Path, root: Path, errors: SkipLog, warnings: SkipLog, *, template: str | None,
                   max_length: int, fmt: str, workers: int, text_side) -> Report:
    """The doctor for preference pairs: the checks the prefer stage's reader, tokeniser and image loader make."""
    from vistune.data_prep.batching.preference import load_pairs, tokenize_pairs

    pairs = load_pairs(data, fmt=fmt, skips=errors)
    report = Report(str(data), len(pairs) + len(errors), errors, warnings)
    bad_images = check_images([p.chosen for p in pairs], root, workers)
    chosen = get_template(template or text_side.template)
    for pair, tok in tokenize_pairs(pairs, text_side.tokenizer, chosen, num_image_tokens=text_side.image_tokens(root),
                                    max_length=max_length):
        problem = bad_images.get(pair.id) or (tok if isinstance(tok, RecordError) else None)
        if problem is not None:
            errors.add(id=pair.id, source=str(data), problem=problem.problem, reason=str(problem),
                       stage="validate", field=problem.field)
            continue
        report.good.append(pair.chosen)
        report.good_ids.append(pair.id)
        report.token_lengths.append(max(len(tok.chosen_ids), len(tok.rejected_ids)))
        report.images_per_record[tok.num_images] += 1
    return report


def diagnose_rl_prompts(data: Path, root: Path, errors: SkipLog, *, template: str | None, max_length: int,
                        workers: int, text_side) -> Report:
    """The doctor for stage rl's prompts: the checks its reader (an answer, one image, unique ids), image loader
    and prompt tokeniser make; token lengths are the prompts' (the completions come on top)."""
    from vistune.data_prep.batching.rl_prompts import load_rl_prompts
    from vistune.data_prep.text.tokenize import encode_prompt

    prompts = load_rl_prompts(data, skips=errors)
    report = Report(str(data), len(prompts) + len(errors), errors, SkipLog())
    records = [p.record() for p in prompts]
    bad_images = check_images(records, root, workers)
    chosen, tokenizer = get_template(template or text_side.template), text_side.tokenizer
    image_tokens = text_side.image_tokens(root)
    for record in records:
        problem = bad_images.get(record.id)
        if problem is None:
            counts = image_tokens(record) if callable(image_tokens) else image_tokens
            length = len(encode_prompt(chosen.prompt(record, tokenizer), tokenizer, counts))
            if length >= max_length:
                problem = RecordError("too_long", f"the prompt takes {length} tokens, leaving none of "
                                      f"{max_length} for the completion", "conversations")
        if problem is not None:
            errors.add(id=record.id, source=str(data), problem=problem.problem, reason=str(problem),
                       stage="validate", field=problem.field)
            continue
        report.good.append(record)
        report.good_ids.append(record.id)
        report.token_lengths.append(length)
        report.images_per_record[1] += 1
    return report


def _diagnose_cached(data: Path, root: Path, text_side, chosen, max_length, fmt, workers, cache_dir, progress):
    from vistune.data_prep.store.cache import CachedTable, anyres_rule, ensure_cache

    rule = anyres_rule(text_side.processor, root) if text_side.processor is not None else None
    table = CachedTable(ensure_cache(data, text_side.tokenizer, chosen, num_image_tokens=text_side.image_tokens(root),
                                     image_tokens_rule=rule, max_length=max_length, fmt=fmt, cache_dir=cache_dir,
                                     workers=workers, progress=progress))
    errors, warnings = SkipLog(), SkipLog()
    cached = table.skips()
    read = [s for s in cached if s.stage == "read"]
    for s in read:
        errors.add(id=s.id, source=str(data), problem=s.problem, reason=s.reason, stage="read", index=s.index,
                   field=s.field)
    report = Report(str(data), len(table) + len(cached), errors, warnings)
    # every record the reader kept, in file order: (position, id, images, root, tokenise problem or None, row)
    kept = []
    for b in table.batches:
        for pos, rid, images, iroot in zip(b.column("position").to_pylist(), b.column("id").to_pylist(),
                                           b.column("images").to_pylist(), b.column("image_root").to_pylist(),
                                           strict=True):
            kept.append((pos, rid, images, iroot, None, len(kept)))
    for d, s in zip(table.dropped_images(), [s for s in cached if s.stage == "tokenize"], strict=True):
        kept.append((d["position"], d["id"], d["images"], d["image_root"], s, None))
    kept.sort(key=lambda k: k[0])
    records = [Record(id=k[1], images=k[2], turns=[], image_root=k[3]) for k in kept]
    bad_images = check_images(records, root, workers, progress)
    lengths, turns_kept, turns_total = (table.column(c) for c in ("length", "turns_kept", "turns_total"))
    for _, rid, images, _, skipped, row in kept:
        problem = bad_images.get(rid)
        if problem is None and skipped is not None:
            problem = RecordError(skipped.problem, skipped.reason, skipped.field)
        if problem is not None:
            errors.add(id=rid, source=str(data), problem=problem.problem, reason=str(problem), stage="validate",
                       field=problem.field)
            continue
        if turns_kept[row] < turns_total[row]:
            warnings.add(id=rid, source=str(data), problem="truncated", stage="validate",
                         reason=f"{turns_kept[row]} of {turns_total[row]} exchanges fit in {max_length} tokens")
        report.good_ids.append(rid)
        report.token_lengths.append(int(lengths[row]))
        report.images_per_record[len(images)] += 1
    return report


def check_images(records: list[Record], root: Path, workers: int = 8, progress: bool = False) -> dict[str, RecordError]:
    """{record id: the first image problem}; each distinct file is decoded once, on `workers` processes."""
    files = sorted({(r.image_root or str(root), p) for r in records for p in r.images})
    results = {}
    bar = tqdm(total=len(files), desc="images", unit="img", mininterval=2.0, disable=not progress)
    if workers > 1 and len(files) > 64:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            for f, err in zip(files, pool.imap(_image_error, files, chunksize=32), strict=True):
                results[f] = err
                bar.update()
    else:
        for f in files:
            results[f] = _image_error(f)
            bar.update()
    bar.close()
    bad = {}
    for r in records:
        for p in r.images:
            err = results[(r.image_root or str(root), p)]
            if err is not None:
                bad[r.id] = err
                break
    return bad


def _image_error(item: tuple[str, str]) -> RecordError | None:
    try:
        load_image(item[1], item[0])
    except RecordError as err:
        return err
    return None


def length_histogram(lengths: list[int]) -> dict[str, int]:
    counts: Counter = Counter()
    for n in lengths:
        upper = next((b for b in LENGTH_BINS if n <= b), None)
        counts[f"<={upper}" if upper else f">{LENGTH_BINS[-1]}"] += 1
    order = [f"<={b}" for b in LENGTH_BINS] + [f">{LENGTH_BINS[-1]}"]
    return {k: counts[k] for k in order if counts[k]}


def _grouped(log: SkipLog, descriptions: dict, first: int) -> dict:
    groups: dict = {}
    for s in log:
        g = groups.setdefault(s.problem, {"count": 0, "description": descriptions.get(s.problem, ""), "first": []})
        g["count"] += 1
        if len(g["first"]) < first:
            g["first"].append({k: v for k, v in asdict(s).items() if k in ("id", "index", "field", "reason")})
    return dict(sorted(groups.items()))
