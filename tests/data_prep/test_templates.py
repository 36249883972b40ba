"""Templates: exact reference strings, supervised spans that decode to reply + end-of-turn, Jinja equivalence."""

from __future__ import annotations

import pytest

from vistune import IGNORE_INDEX
from vistune.data_prep import Record, Turn, get_template, tokenize_record
from vistune.data_prep.text.templates import VICUNA_SYSTEM

RECORD = Record(
    id="r", images=["a.png"],
    turns=[Turn("user", "What colour?"), Turn("assistant", "red"), Turn("user", "Shape?"), Turn("assistant", "circle")],
)
SYS = VICUNA_SYSTEM
REFERENCE = {
    "vicuna_v1": f"{SYS} USER: <image>\nWhat colour? ASSISTANT: red</s>USER: Shape? ASSISTANT: circle</s>",
    "plain": "<image>red\ncircle\n",  # stage 1 data has one exchange; two show the user's words are dropped
    "llama3": "<s><|start_header_id|>user<|end_header_id|>\n\n<image>\nWhat colour?<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\nred<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\nShape?<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\ncircle<|eot_id|>",
    "chatml": "<|im_start|>user\n<image>\nWhat colour?<|im_end|>\n<|im_start|>assistant\nred<|im_end|>\n"
    "<|im_start|>user\nShape?<|im_end|>\n<|im_start|>assistant\ncircle<|im_end|>\n",
}
END = {"vicuna_v1": "</s>", "plain": "\n", "llama3": "<|eot_id|>", "chatml": "<|im_end|>"}
N_IMG = 4


def supervised_runs(labels: list[int]) -> list[list[int]]:
    runs, current = [], []
    for x in labels:
        if x == IGNORE_INDEX:
            if current:
                runs.append(current)
            current = []
        else:
            current.append(x)
    return runs + ([current] if current else [])


def check_masking(template, tokenizer, record, reference, end):
    tok = tokenize_record(record, tokenizer, template, num_image_tokens=N_IMG, max_length=512)
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    assert tok.input_ids.count(image_id) == N_IMG * len(record.images)
    collapsed = []  # the ids with each image's N_IMG tokens folded back into one, to compare with the text
    for t in tok.input_ids:
        if not (t == image_id and collapsed and collapsed[-1] == image_id):
            collapsed.append(t)
    bos = tokenizer.bos_token  # exactly one BOS: the tokenizer's, or the one the template wrote
    expected = reference if reference.startswith(bos) else bos + reference
    assert tokenizer.decode(collapsed, skip_special_tokens=False) == expected
    replies = [t.text for t in record.turns if t.role == "assistant"]
    runs = supervised_runs(tok.labels)
    assert len(runs) == len(replies)
    for run, reply in zip(runs, replies, strict=True):
        decoded = tokenizer.decode(run)
        # the reply's first token may carry the separator whitespace before it; nothing else may be added
        assert decoded.lstrip(" \n") == reply + end or decoded == reply + end, (decoded, reply)
    assert all(lab == IGNORE_INDEX for t, lab in zip(tok.input_ids, tok.labels, strict=True) if t == image_id)


@pytest.mark.parametrize("name", ["vicuna_v1", "plain", "llama3", "chatml"])
def test_reference_string_and_supervised_spans(name, tokenizer):
    template = get_template(name)
    assert template.render(RECORD, tokenizer).text == REFERENCE[name]
    if name == "plain":  # adjacent captions form one supervised run; check the single-caption record
        caption = Record(id="c", images=["a.png"], turns=RECORD.turns[:2])
        check_masking(template, tokenizer, caption, "<image>red\n", "\n")
    else:
        check_masking(template, tokenizer, RECORD, REFERENCE[name], END[name])


def test_vicuna_span_tokens_exactly(tokenizer):
    """The supervised ids are exactly the tokens of ' red</s>' and ' circle</s>' in the full encoding."""
    tok = tokenize_record(RECORD, tokenizer, get_template("vicuna_v1"), num_image_tokens=1, max_length=512)
    runs = supervised_runs(tok.labels)
    assert [tokenizer.decode(r) for r in runs] == [" red</s>", " circle</s>"]
    assert runs[0][-1] == tokenizer.eos_token_id


def test_system_prompt_and_text_only(tokenizer):
    record = Record(id="t", images=[], turns=[Turn("user", "Hi"), Turn("assistant", "Hello")], system="Be brief.")
    rendered = get_template("vicuna_v1").render(record, tokenizer)
    assert rendered.text == "Be brief. USER: Hi ASSISTANT: Hello</s>"
    check_masking(get_template("chatml"), tokenizer, record,
                  "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                  "<|im_start|>assistant\nHello<|im_end|>\n", "<|im_end|>")


MESSAGES = [
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What colour?"}]},
    {"role": "assistant", "content": "red"},
    {"role": "user", "content": [{"type": "text", "text": "Shape?"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "circle"}]},
]


@pytest.mark.parametrize("name", ["vicuna_v1", "plain", "llama3", "chatml"])
def test_jinja_equals_renderer(name, tiny_processor):
    from vistune.data_prep import record_from_messages

    template = get_template(name)
    jinja = tiny_processor.apply_chat_template(MESSAGES, chat_template=template.jinja, tokenize=False)
    assert jinja == template.render(RECORD, tiny_processor.tokenizer).text
    prompt_messages = MESSAGES[:3]
    prompt = tiny_processor.apply_chat_template(prompt_messages, chat_template=template.jinja, tokenize=False,
                                                add_generation_prompt=True)
    as_record = Record(id="p", images=["a.png"], turns=RECORD.turns[:3])
    assert prompt == template.prompt(as_record, tiny_processor.tokenizer)
    string_messages = [{"role": "user", "content": "<image>\nWhat colour?"}, {"role": "assistant", "content": "red"}]
    rec = record_from_messages([{"role": "user", "content": "What colour?"}, {"role": "assistant", "content": "red"}],
                               images=["a.png"])
    assert tiny_processor.apply_chat_template(string_messages, chat_template=template.jinja, tokenize=False) == \
        template.render(rec, tiny_processor.tokenizer).text


def test_vicuna_generation_prompt_ends_with_assistant(tiny_processor):
    prompt = get_template("vicuna_v1").prompt(Record("p", ["a.png"], [Turn("user", "What colour?")]))
    assert prompt == f"{SYS} USER: <image>\nWhat colour? ASSISTANT:"


def test_build_llava_puts_the_template_on_the_processor(tiny_parts):
    from vistune.model import build_llava

    _, processor = build_llava(*map(str, tiny_parts), chat_template=get_template("vicuna_v1").jinja)
    assert processor.chat_template == get_template("vicuna_v1").jinja


def test_auto_uses_the_tokenizers_template_and_finds_spans(tokenizer):
    import copy

    tok = copy.deepcopy(tokenizer)
    tok.chat_template = get_template("chatml").jinja  # stands in for a tokenizer's own chat template
    auto = get_template("auto")
    rendered = auto.render(RECORD, tok)
    assert rendered.text == REFERENCE["chatml"]
    assert [rendered.text[a:b] for a, b in rendered.spans] == ["red<|im_end|>", "circle<|im_end|>"]
    check_masking(auto, tok, RECORD, REFERENCE["chatml"], "<|im_end|>")
    with pytest.raises(ValueError, match="chat template"):
        auto.render(RECORD, copy.deepcopy(tokenizer))  # the tiny tokenizer has none


def test_unknown_template_is_named():
    with pytest.raises(ValueError, match="vicuna_v1"):
        get_template("vicuna")
