"""Builders for small LLaVA-format fixtures, shared by the data tests (imported as `data_fixtures`)."""

from __future__ import annotations

import json


def write_json(path, data) -> str:
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


def llava(rid, image, *qa):
    """A LLaVA record: `image` (str, list or None) and (question, answer) pairs; the tag leads the first turn."""
    images = [image] if isinstance(image, str) else list(image or [])
    conv = []
    for k, (q, a) in enumerate(qa):
        tags = "<image>\n" * len(images) if k == 0 else ""
        conv += [{"from": "human", "value": tags + q}, {"from": "gpt", "value": a}]
    record = {"id": rid, "conversations": conv}
    if image is not None:
        record["image"] = image
    return record


def huge_png_header() -> bytes:
    """A PNG whose header claims 60000 x 60000 pixels: PIL refuses it as a decompression bomb on open."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


def one_of_each_problem(root) -> dict[str, bytes]:
    """{expected problem: JSONL line} for a dataset under `root` (images written there), plus a good record."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), (255, 0, 0)).save(root / "ok.png")
    (root / "zero.png").write_bytes(b"")
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (root / "huge.png").write_bytes(huge_png_header())
    (root.parent / "outside.png").write_bytes((root / "ok.png").read_bytes())
    lines = {
        "good": llava("good", "ok.png", ("What colour?", "red")),
        "bad_shape": {"id": "bad_shape", "conversations": "nope"},
        "unknown_role": {"id": "unknown_role", "conversations": [{"from": "robot", "value": "q"}]},
        "role_order": {"id": "role_order", "conversations": [{"from": "gpt", "value": "a"}]},
        "empty_conversation": {"id": "empty_conversation", "conversations": []},
        "empty_reply": llava("empty_reply", None, ("q", "")),
        "image_tag_mismatch": llava("image_tag_mismatch", None, ("<image>\nq", "a")),
        "image_tag_in_reply": llava("image_tag_in_reply", None, ("q", "an <image> here")),
        "image_escapes_root": llava("image_escapes_root", "../outside.png", ("q", "a")),
        "missing_image": llava("missing_image", "gone.png", ("q", "a")),
        "empty_image": llava("empty_image", "zero.png", ("q", "a")),
        "corrupt_image": llava("corrupt_image", "corrupt.png", ("q", "a")),
        "image_too_large": llava("image_too_large", "huge.png", ("q", "a")),
        "too_long": llava("too_long", "ok.png", ("word " * 3000, "a")),
    }
    out = {k: json.dumps(v).encode() for k, v in lines.items()}
    out["bad_json"] = b'{"id": "bad_json", "conversations": [oops'
    out["bad_text"] = json.dumps(llava("bad_text", None, ("q", "XX"))).encode().replace(b"XX", b"\xff\xfe")
    out["duplicate_id"] = out["good"]
    return out
