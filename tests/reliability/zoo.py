"""The bad-input zoo: good synthetic records mixed with one record per kind of bad input a real dataset holds.

`build_zoo(dir)` writes `dir/data/zoo.jsonl` (image root `dir/data`) and a valid image *outside* the root, and
returns which ids must be skipped (with the problem code) and which must be trained on. Decisions per kind:

- skipped: corrupt / truncated / zero-byte / decompression-bomb images, missing files (and paths that cannot be
  reached: a NUL byte, a symlink loop), a symlink, a `..` path and an absolute path that leave the image root, malformed JSON lines, wrong field types, unknown roles, empty
  conversations, `<image>` tags without images and images without tags, non-UTF-8 text, and a reply so long
  that not even the first exchange fits in max_length;
- trained on (valid inputs, converted): CMYK JPEG, 16-bit PNG, palette PNG with transparency, animated GIF,
  an EXIF-rotated JPEG, and a very long reply in a *later* exchange (truncated to the exchanges that fit).
"""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

MAX_LENGTH = 128  # the zoo run's data.max_length; "long" replies are far beyond it


@dataclass
class Zoo:
    path: Path  # the JSONL records file
    image_root: Path  # where image paths are relative to
    outside: Path  # a valid image outside the root, that escaping records point at
    bad: dict[str, str]  # id -> problem code, for every record that must be skipped
    good: list[str]  # ids that must be trained on
    converted: list[str]  # the good ids whose image needs a mode conversion (CMYK, 16-bit, palette, animated)


def _llava(rid, image, *qa, tags: int | None = None) -> dict:
    images = [image] if isinstance(image, str) else list(image or [])
    n_tags = len(images) if tags is None else tags
    conv = []
    for k, (q, a) in enumerate(qa):
        conv += [{"from": "human", "value": ("<image>\n" * n_tags if k == 0 else "") + q},
                 {"from": "gpt", "value": a}]
    record = {"id": rid, "conversations": conv}
    if image is not None:
        record["image"] = image
    return record


def _bomb_png() -> bytes:
    """A 50 kB-ish PNG header claiming 60000 x 60000 pixels: far past PIL's decompression-bomb limit."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


def _write_images(root: Path) -> None:
    zoo = root / "zoo"
    zoo.mkdir(parents=True, exist_ok=True)
    rgb = Image.new("RGB", (48, 32), (200, 30, 30))
    rgb.save(zoo / "ok.png")
    (zoo / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    buf = io.BytesIO()
    Image.effect_noise((64, 64), 40).convert("RGB").save(buf, "JPEG", quality=90)
    (zoo / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (zoo / "zero.png").write_bytes(b"")
    (zoo / "bomb.png").write_bytes(_bomb_png())
    rgb.convert("CMYK").save(zoo / "cmyk.jpg", "JPEG")
    Image.fromarray(np.full((32, 32), 40000, dtype=np.uint16)).save(zoo / "sixteen.png")
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    palette.info["transparency"] = 0
    palette.save(zoo / "palette.png", transparency=0)
    frames = [Image.new("RGB", (24, 24), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(zoo / "animated.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90
    rgb.save(zoo / "rotated.jpg", "JPEG", exif=exif.tobytes())


def build_zoo(directory: str | Path, good_records: list[dict]) -> Zoo:
    """Writes the zoo under `directory`; `good_records` are valid LLaVA records with images under data/."""
    directory = Path(directory)
    root = directory / "data"
    _write_images(root)
    outside = directory / "outside" / "secret.png"
    outside.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), (0, 255, 0)).save(outside)  # valid: only the root check can refuse it
    (root / "zoo" / "link.png").symlink_to(outside)
    (root / "zoo" / "loop1.png").symlink_to("loop2.png")
    (root / "zoo" / "loop2.png").symlink_to("loop1.png")

    q = ("What is shown?", "A red rectangle.")
    long_reply = " ".join(["red"] * (MAX_LENGTH * 8))
    lines: list[tuple[str | None, bytes]] = []  # (expected problem or None for good, line)

    def add(problem: str | None, record) -> None:
        lines.append((problem, json.dumps(record).encode() if not isinstance(record, bytes) else record))

    for record in good_records:
        add(None, record)
    for rid, name in (("cmyk", "cmyk.jpg"), ("sixteen_bit", "sixteen.png"), ("palette", "palette.png"),
                      ("animated", "animated.gif"), ("exif_rotated", "rotated.jpg")):
        add(None, _llava(rid, f"zoo/{name}", q))
    add(None, _llava("long_later_reply", "zoo/ok.png", q, ("And then?", long_reply)))
    add(None, _llava("text_only", None, ("Say hi.", "Hi.")))

    for rid, name, problem in (("corrupt", "zoo/corrupt.png", "corrupt_image"),
                               ("truncated", "zoo/truncated.jpg", "corrupt_image"),
                               ("zero_byte", "zoo/zero.png", "empty_image"),
                               ("bomb", "zoo/bomb.png", "image_too_large"),
                               ("missing", "zoo/nowhere.png", "missing_image"),
                               ("symlink_escape", "zoo/link.png", "image_escapes_root"),
                               ("dotdot_escape", "../outside/secret.png", "image_escapes_root"),
                               ("absolute_escape", str(outside), "image_escapes_root"),
                               ("nul_in_path", "zoo/ok\x00.png", "missing_image"),
                               ("symlink_loop", "zoo/loop1.png", "missing_image")):
        add(problem, _llava(rid, name, q))
    add("bad_json", b'{"id": "malformed_json", "conversations": [{"from": "human", "value": "q"')
    add("bad_shape", {"id": "wrong_types", "conversations": [{"from": "human", "value": 42},
                                                             {"from": "gpt", "value": "a"}]})
    add("bad_shape", {"id": "wrong_image_type", "image": {"path": "zoo/ok.png"},
                      "conversations": [{"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "a"}]})
    add("unknown_role", {"id": "unknown_role", "conversations": [{"from": "robot", "value": "q"},
                                                                 {"from": "gpt", "value": "a"}]})
    add("empty_conversation", {"id": "empty_conversation", "conversations": []})
    add("image_tag_mismatch", _llava("tag_without_image", None, ("<image>\nWhat is shown?", "A square.")))
    add("image_tag_mismatch", _llava("image_without_tag", "zoo/ok.png", q, tags=0))
    add("bad_text", json.dumps(_llava("non_utf8", None, ("q", "XX"))).encode().replace(b"XX", b"caf\xe9 \xff"))
    add("too_long", _llava("long_first_reply", "zoo/ok.png", ("What is shown?", long_reply)))

    path = root / "zoo.jsonl"
    path.write_bytes(b"\n".join(line for _, line in lines) + b"\n")
    bad = {}
    for problem, line in lines:
        if problem is not None:
            rid = "malformed_json" if problem == "bad_json" else json.loads(line.decode("utf-8", "replace"))["id"]
            bad[rid] = problem
    bad_json_index = [i for i, (p, _) in enumerate(lines) if p == "bad_json"][0]
    bad[f"#{bad_json_index}"] = bad.pop("malformed_json")  # an unparsable line has only its index as an id
    good = [json.loads(line)["id"] for p, line in lines if p is None]
    return Zoo(path, root, outside, bad, good, ["cmyk", "sixteen_bit", "palette", "animated"])
