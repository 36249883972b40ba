"""`vistune data stats`: what a dataset holds (records, modalities, turns, images, text lengths) at a glance."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from vistune.data_prep.records.readers import load_records
from vistune.data_prep.records.skips import SkipLog


@dataclass
class Stats:
    records: int = 0  # good records
    skipped: int = 0  # records the reader could not use (see `vistune data validate`)
    with_images: int = 0
    text_only: int = 0
    images_per_record: Counter = field(default_factory=Counter)
    exchanges_per_record: Counter = field(default_factory=Counter)
    reply_words: list[int] = field(default_factory=list)
    question_words: list[int] = field(default_factory=list)

    def format(self) -> str:
        lines = [f"records           {self.records}  (skipped {self.skipped})",
                 f"with images       {self.with_images}", f"text-only         {self.text_only}",
                 "images / record   " + _counter(self.images_per_record),
                 "exchanges / record " + _counter(self.exchanges_per_record),
                 "question words    " + _summary(self.question_words),
                 "reply words       " + _summary(self.reply_words)]
        return "\n".join(lines)


def dataset_stats(path: str | Path, fmt: str = "auto") -> Stats:
    skips = SkipLog()
    records = load_records(path, fmt=fmt, skips=skips)
    stats = Stats(records=len(records), skipped=len(skips))
    for r in records:
        stats.with_images += bool(r.images)
        stats.text_only += not r.images
        stats.images_per_record[len(r.images)] += 1
        stats.exchanges_per_record[sum(t.role == "assistant" for t in r.turns)] += 1
        for t in r.turns:
            (stats.reply_words if t.role == "assistant" else stats.question_words).append(len(t.text.split()))
    return stats


def _counter(c: Counter) -> str:
    return "  ".join(f"{k}: {v}" for k, v in sorted(c.items())) or "-"


def _summary(values: list[int]) -> str:
    if not values:
        return "-"
    s = sorted(values)
    return f"min {s[0]}  median {s[len(s) // 2]}  p95 {s[int(0.95 * (len(s) - 1))]}  max {s[-1]}"
