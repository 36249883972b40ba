"""A log of skipped records: every record that a reader, the tokeniser or the image loader gave up on.

Bad input never stops a run; it is skipped, counted on the console and listed one per line in
`skipped.jsonl` (id, source file, index, field, problem code, reason, stage) so nothing is lost silently.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class Skip:
    id: str  # record id ("" when the record was too broken to have one)
    source: str  # the data file (or "-" when unknown)
    problem: str  # a code from vistune.data_prep.records.record.PROBLEMS
    reason: str  # human-readable detail, naming the file / field / value at fault
    stage: str  # "read", "tokenize", "image" or "validate"
    index: int | None = None  # position of the record in its file
    field: str | None = None  # the field at fault, e.g. "conversations[2].from"


class SkipLog:
    """Collects `Skip`s; `summary()` for the console, `write_jsonl()` for the run directory.

    With `stream_to`, every skip is also appended to that file as it happens (one short O_APPEND write per
    line), so skips recorded inside DataLoader worker processes reach the run's `skipped.jsonl` too;
    `SkipLog.read_jsonl` loads it back for the summary.
    """

    def __init__(self, stream_to: str | Path | None = None) -> None:
        self.items: list[Skip] = []
        self.stream_to = Path(stream_to) if stream_to else None
        if self.stream_to:
            self.stream_to.parent.mkdir(parents=True, exist_ok=True)

    @classmethod
    def read_jsonl(cls, path: str | Path) -> SkipLog:
        log_ = cls()
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if line.strip():
                log_.items.append(Skip(**json.loads(line)))
        return log_

    def add(self, *, id: str, source: str, problem: str, reason: str, stage: str,
            index: int | None = None, field: str | None = None) -> Skip:
        skip = Skip(id=str(id), source=str(source), problem=problem, reason=reason, stage=stage,
                    index=index, field=field)
        self.items.append(skip)
        if self.stream_to:
            with self.stream_to.open("a", encoding="utf-8") as f:
                f.write(json.dumps(asdict(skip), ensure_ascii=False) + "\n")
        log.debug("skipped %s (%s): %s", skip.id, skip.problem, skip.reason)
        return skip

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items)

    def ids(self) -> set[str]:
        return {s.id for s in self.items}

    def counts(self) -> Counter:
        """Number of skips per (stage, problem)."""
        return Counter((s.stage, s.problem) for s in self.items)

    def summary(self) -> str:
        if not self.items:
            return "skipped 0 records"
        lines = [f"skipped {len(self.items)} record(s):"]
        for (stage, problem), n in sorted(self.counts().items()):
            lines.append(f"  {n:6d}  {stage:9s} {problem}")
        return "\n".join(lines)

    def write_jsonl(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as f:
            for s in self.items:
                f.write(json.dumps(asdict(s), ensure_ascii=False) + "\n")
        return path
