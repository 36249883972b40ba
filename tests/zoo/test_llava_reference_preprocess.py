"""vicuna_v1 and plain ids / labels on a sentencepiece-only Vicuna tokenizer equal LLaVA's reference preprocessing.

The oracle below re-implements haotian-liu/LLaVA's llava/train/train.py `preprocess_v1` / `preprocess_plain`,
llava/mm_utils.py `tokenizer_image_token` and llava/conversation.py `conv_vicuna_v1` (SeparatorStyle.TWO, sep " ",
sep2 "</s>") / `conv_llava_plain` (sep "\\n") as written there, offsets included, on the zoo's Vicuna layout.
"""

from __future__ import annotations

import json

import pytest

IGNORE, IMAGE_INDEX = -100, -200
SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
          "detailed, and polite answers to the user's questions.")


def tokenizer_image_token(prompt: str, tokenizer) -> list[int]:
    chunks = [tokenizer(chunk).input_ids for chunk in prompt.split("<image>")]
    ids, offset = [], 0
    if chunks and chunks[0] and chunks[0][0] == tokenizer.bos_token_id:
        offset = 1
        ids.append(chunks[0][0])
    separated = [e for sub in zip(chunks, [[IMAGE_INDEX] * (offset + 1)] * len(chunks)) for e in sub][:-1]
    for x in separated:
        ids.extend(x[offset:])
    return ids


def _prompt_v1(source: list[dict]) -> str:
    roles = {"human": "USER", "gpt": "ASSISTANT"}
    seps = [" ", "</s>"]
    ret = SYSTEM + seps[0]
    for i, turn in enumerate(source):
        ret += roles[turn["from"]] + ": " + turn["value"] + seps[i % 2]
    return ret


def preprocess_v1(source: list[dict], tokenizer, has_image: bool) -> tuple[list[int], list[int]]:
    conversation = _prompt_v1(source)
    ids = tokenizer_image_token(conversation, tokenizer) if has_image else tokenizer(conversation).input_ids
    target = list(ids)
    total_len = len(ids)
    sep = " " + "ASSISTANT" + ": "
    cur_len = 1
    target[:cur_len] = [IGNORE] * cur_len
    for i, rou in enumerate(conversation.split("</s>")):
        if rou == "":
            break
        parts = rou.split(sep)
        if len(parts) != 2:
            break
        parts[0] += sep
        if has_image:
            round_len = len(tokenizer_image_token(rou, tokenizer))
            instruction_len = len(tokenizer_image_token(parts[0], tokenizer)) - 2
        else:
            round_len = len(tokenizer(rou).input_ids)
            instruction_len = len(tokenizer(parts[0]).input_ids) - 2
        if i != 0 and not tokenizer.legacy:  # IS_TOKENIZER_GREATER_THAN_0_14
            round_len -= 1
            instruction_len -= 1
        target[cur_len:cur_len + instruction_len] = [IGNORE] * instruction_len
        cur_len += round_len
    target[cur_len:] = [IGNORE] * (len(target) - cur_len)
    assert cur_len == total_len, f"LLaVA's own tokenization mismatch: {cur_len} vs. {total_len}"
    return ids, target


def preprocess_plain(source: list[dict], tokenizer) -> tuple[list[int], list[int]]:
    conversation = "<image>" + source[1]["value"] + "\n"
    ids = tokenizer_image_token(conversation, tokenizer)
    n = len(tokenizer_image_token("<image>", tokenizer))
    return ids, [IGNORE] * n + ids[n:]


RECORDS = [
    {"id": "a", "image": "x.png", "conversations": [
        {"from": "human", "value": "<image>\nWhat is the colour of the shape?"}, {"from": "gpt", "value": "red"}]},
    {"id": "b", "image": "x.png", "conversations": [
        {"from": "human", "value": "What shape is in the image?\n<image>"}, {"from": "gpt", "value": "A red circle."},
        {"from": "human", "value": "How many shapes are there?"}, {"from": "gpt", "value": "Two blue squares."}]},
    {"id": "c", "conversations": [
        {"from": "human", "value": "Is there a circle?"}, {"from": "gpt", "value": "Yes"},
        {"from": "human", "value": "Where is the shape?"}, {"from": "gpt", "value": "left"}]},
    {"id": "d", "image": "x.png", "conversations": [  # digits: sentencepiece splits " 2" into "▁" + "2"
        {"from": "human", "value": "<image>\nHow many shapes are there?"}, {"from": "gpt", "value": "2"},
        {"from": "human", "value": "And circles?"}, {"from": "gpt", "value": "10 circles"}]},
]


CAPTIONS = [  # stage-1 records: one image, one caption (LLaVA's preprocess_plain asserts two turns)
    {"id": f"p{i}", "image": "x.png", "conversations": [
        {"from": "human", "value": "<image>\nDescribe the image briefly."}, {"from": "gpt", "value": caption}]}
    for i, caption in enumerate(["A red circle on the left.", "2 blue squares at the top.", "red"])
]


def _vistune(tmp_path, tokenizer, template: str, n_image: int, records=RECORDS):
    from vistune.data_prep import get_template, load_records, tokenize_record

    path = tmp_path / "records.json"
    path.write_text(json.dumps(records))
    out = []
    for record in load_records(str(path)):
        tok = tokenize_record(record, tokenizer, get_template(template), num_image_tokens=n_image, max_length=4096)
        out.append((tok.input_ids, tok.labels))
    return out


def _collapse(ids: list[int], labels: list[int], image_id: int) -> tuple[list[int], list[int]]:
    """vistune expands each image to N image-token ids; LLaVA holds one IMAGE_TOKEN_INDEX placeholder."""
    out_ids, out_labels = [], []
    for i, (t, lab) in enumerate(zip(ids, labels)):
        if t == image_id:
            if i and ids[i - 1] == image_id:
                continue
            t = IMAGE_INDEX
        out_ids.append(t)
        out_labels.append(lab)
    return out_ids, out_labels


def _tokenizer(directory):
    from transformers import AutoTokenizer

    from vistune.model.compose import add_special_tokens

    tokenizer = AutoTokenizer.from_pretrained(directory)
    assert not (directory / "tokenizer.json").exists()  # sentencepiece only, as lmsys/vicuna-7b-v1.5 ships it
    add_special_tokens(tokenizer)  # what composing does: <image> added, pad = unk
    return tokenizer


@pytest.mark.parametrize("legacy", [False, True])
def test_vicuna_v1_matches_llava_preprocess_v1(zoo, tmp_path, legacy):
    tokenizer = _tokenizer(zoo.vicuna(legacy))
    assert tokenizer.legacy is legacy and tokenizer("hi").input_ids[0] == tokenizer.bos_token_id  # add_bos_token
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    for (ids, labels), record in zip(_vistune(tmp_path, tokenizer, "vicuna_v1", 4), RECORDS, strict=True):
        source = [dict(t) for t in record["conversations"]]
        has_image = "image" in record
        if has_image:  # LLaVA's preprocess_multimodal moves the image to the front of the first turn
            source[0]["value"] = "<image>\n" + source[0]["value"].replace("<image>", "").strip()
        ref_ids, ref_labels = preprocess_v1(source, tokenizer, has_image)
        got_ids, got_labels = _collapse(ids, labels, image_id)
        assert got_ids == ref_ids, record["id"]
        assert got_labels == ref_labels, record["id"]


@pytest.mark.parametrize("legacy", [False, True])
def test_plain_matches_llava_preprocess_plain(zoo, tmp_path, legacy):
    tokenizer = _tokenizer(zoo.vicuna(legacy))
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    results = _vistune(tmp_path, tokenizer, "plain", 4, CAPTIONS)
    for (ids, labels), record in zip(results, CAPTIONS, strict=True):
        ref_ids, ref_labels = preprocess_plain(record["conversations"], tokenizer)
        assert _collapse(ids, labels, image_id) == (ref_ids, ref_labels), record["id"]
