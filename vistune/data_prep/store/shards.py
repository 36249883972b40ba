"""WebDataset shards: `vistune data shard` writes them from LLaVA JSON + images; the index says where each member is.

A shard is a plain tar of samples `KEY.json` (the record as LLaVA JSON, its images named by member suffix,
e.g. "0.jpg") and `KEY.0.jpg`, `KEY.1.png`, ... (any WebDataset reader groups them by KEY). `index.json` beside
the shards records every member's byte offset so the stream reads a sample with two seeks; without it the
tars' headers are scanned (the tar format alone is enough).
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from vistune.data_prep.images import load_image, resolve_image_path
from vistune.data_prep.records import RecordError
from vistune.data_prep.records.convert import to_llava
from vistune.data_prep.records.readers import load_records
from vistune.data_prep.records.skips import SkipLog

INDEX_FILE = "index.json"


@dataclass
class ShardReport:
    out: Path
    shards: int = 0
    samples: int = 0
    skips: SkipLog = field(default_factory=SkipLog)

    def format(self) -> str:
        return f"wrote {self.samples} samples in {self.shards} shard(s) to {self.out}\n{self.skips.summary()}"


def write_shards(data: str | Path, out: str | Path, *, image_root: str | Path | None = None, per_shard: int = 1000,
                 vision: str | None = None, aspect: str = "pad", fmt: str = "auto") -> ShardReport:
    """Shards of `per_shard` samples in file order; `vision` stores images already padded and resized for that
    tower (PNG, lossless); records that cannot be read or whose images cannot be loaded are skipped and listed."""
    data, out = Path(data), Path(out)
    root = Path(image_root) if image_root else data.parent
    out.mkdir(parents=True, exist_ok=True)
    report = ShardReport(out)
    records = load_records(data, fmt=fmt, skips=report.skips)
    prepare = _preparer(vision, aspect) if vision else None
    index: list[dict] = []
    tar, entry = None, None
    for i, record in enumerate(records):
        try:
            images = [_image_bytes(p, record.image_root or root, prepare) for p in record.images]
        except RecordError as err:
            report.skips.add(id=record.id, source=str(data), problem=err.problem, reason=str(err), stage="image")
            continue
        if tar is None or len(entry["samples"]) >= per_shard:
            if tar is not None:
                tar.close()
            name = f"shard-{len(index):06d}.tar"
            tar, entry = tarfile.open(out / name, "w", format=tarfile.USTAR_FORMAT), {"file": name, "samples": []}
            index.append(entry)
        key = f"{i:09d}"
        raw = to_llava(record)
        names = [f"{k}{suffix}" for k, (suffix, _) in enumerate(images)]
        if names:
            raw["image"] = names[0] if len(names) == 1 else names
        sample = [_add(tar, f"{key}.json", json.dumps(raw, ensure_ascii=False).encode())]
        sample += [_add(tar, f"{key}.{n}", blob) for n, (_, blob) in zip(names, images, strict=True)]
        entry["samples"].append(sample)
        report.samples += 1
    if tar is not None:
        tar.close()
    (out / INDEX_FILE).write_text(json.dumps({"version": 1, "source": str(data), "shards": index}))
    report.skips.write_jsonl(out / "skipped.jsonl") if len(report.skips) else None
    report.shards = len(index)
    return report


def _add(tar: tarfile.TarFile, name: str, blob: bytes) -> list:
    """Appends one member; [name, data offset, size] for the index."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(blob), 0, 0o644
    tar.addfile(info, io.BytesIO(blob))
    padded = -(-len(blob) // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
    return [name, tar.offset - padded, len(blob)]  # the data sits just before the write position


def _image_bytes(path: str, root, prepare) -> tuple[str, bytes]:
    """(".jpg" etc., the bytes to store): the file as it is, or re-encoded after `prepare`."""
    if prepare is None:
        real = resolve_image_path(path, root)
        load_image(path, root)  # a sample whose image cannot be used is skipped now, not at every epoch
        return "." + (real.suffix.lstrip(".").lower() or "img"), real.read_bytes()
    buf = io.BytesIO()
    prepare(load_image(path, root)).save(buf, format="PNG")
    return ".png", buf.getvalue()


def _preparer(vision: str, aspect: str):
    from vistune.data_prep.images import ImageTransform
    from vistune.data_prep.images.preprocess import image_processor_for, prepare_image

    transform = ImageTransform(image_processor_for(vision), aspect)
    return lambda img: prepare_image(img, transform)


def read_index(directory: str | Path) -> list[dict]:
    """[{"file", "samples": [[[name, offset, size], ...] per sample]}] per shard, sorted by file name."""
    directory = Path(directory)
    if (directory / INDEX_FILE).is_file():
        return json.loads((directory / INDEX_FILE).read_text())["shards"]
    shards = []
    for path in sorted(directory.glob("*.tar")):
        samples: dict[str, list] = {}
        with tarfile.open(path, "r") as tar:  # headers only: tarfile seeks over member data
            for m in tar:
                if m.isfile():
                    samples.setdefault(m.name.split(".", 1)[0], []).append([m.name, m.offset_data, m.size])
        shards.append({"file": path.name, "samples": list(samples.values())})
    return shards
