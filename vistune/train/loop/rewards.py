"""Verifiable rewards for stage rl: the built-in ones, `module:function` user rewards, and their checks.

Every reward has TRL's reward-function signature: `f(prompts, completions, completion_ids, **columns)` returns
one float (or None: not applicable) per completion; `columns` are the dataset's own (`answer`, `question_type`,
...). Prompts and completions are plain strings here (vistune renders the prompt with its own template).

| name   | 1.0 when                                                           | normalisation (vistune.eval.scorers)  |
|--------|--------------------------------------------------------------------|---------------------------------------|
| exact  | the completion equals the answer                                   | `normalize_short` (shapes / GQA)      |
| number | the first number in the completion equals the answer's (None: the answer is no number) | digits or a number word |
| choice | the option letter read from the completion is the answer's (None: the answer is no letter) | `parse_sqa_letter` |
| format | the completion is one short line (`rl.format_max_words`) or fullmatches `rl.format_regex` | stripped |
"""

from __future__ import annotations

import difflib
import functools
import importlib
import re
from collections.abc import Callable, Sequence

from vistune.eval.scorers import normalize_short, parse_sqa_letter

RewardFunc = Callable[..., list]
BUILTIN = ("exact", "number", "choice", "format")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_WORDS = {w: i for i, w in enumerate(("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                                      "ten"))}


class RewardError(ValueError):
    """A reward function is unknown, raises, or returns something other than one number per completion."""


def exact(completions: Sequence[str], answer: Sequence[str], **columns) -> list[float]:
    return [float(normalize_short(c) == normalize_short(str(a))) for c, a in zip(completions, answer, strict=True)]


def read_number(text: str) -> float | None:
    """The first number in `text`: digits ("3", "2.5") or a number word ("three"); None if there is none."""
    text = normalize_short(text)
    found = [(m.start(), float(m.group())) for m in _NUMBER.finditer(text)][:1]
    found += [(m.start(), float(_WORDS[m.group()])) for m in re.finditer(r"[a-z]+", text) if m.group() in _WORDS][:1]
    return min(found)[1] if found else None


def number(completions: Sequence[str], answer: Sequence[str], **columns) -> list[float | None]:
    out = []
    for c, a in zip(completions, answer, strict=True):
        gold = read_number(str(a))
        out.append(None if gold is None else float(read_number(c) == gold))
    return out


def choice(completions: Sequence[str], answer: Sequence[str], **columns) -> list[float | None]:
    out = []
    for c, a in zip(completions, answer, strict=True):
        gold = str(a).strip().rstrip(".").upper()
        out.append(float(parse_sqa_letter(c.strip()) == gold) if len(gold) == 1 and gold.isalpha() else None)
    return out


def format_reward(regex: str = "", max_words: int = 3) -> RewardFunc:
    """The `format` reward: one line of at most `max_words` words, or a fullmatch of `regex`."""
    pattern = re.compile(regex, re.DOTALL) if regex else None

    def format(completions: Sequence[str], **columns) -> list[float]:  # noqa: A001 (the name TRL logs)
        if pattern is not None:
            return [float(pattern.fullmatch(c.strip()) is not None) for c in completions]
        return [float(bool(c.strip()) and "\n" not in c.strip() and len(c.split()) <= max_words) for c in completions]

    return format


def check_reward_names(names: Sequence[str]) -> None:
    """Raises RewardError for a name that is neither built in nor `module:function`."""
    for name in names:
        if name not in BUILTIN and not re.fullmatch(r"[\w.]+:\w+", name):
            close = difflib.get_close_matches(name, BUILTIN, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise RewardError(f"rl.rewards: {name!r} is neither a built-in reward ({', '.join(BUILTIN)}) nor "
                              f"module:function{hint}")


def resolve_rewards(names: Sequence[str], format_regex: str = "", format_max_words: int = 3) -> list[RewardFunc]:
    """The reward functions `rl.rewards` names, each wrapped so a failure names it (`checked`)."""
    check_reward_names(names)
    builtin = {"exact": exact, "number": number, "choice": choice,
               "format": format_reward(format_regex, format_max_words)}
    return [checked(builtin[name] if name in builtin else _import(name), name) for name in names]


def _import(spec: str) -> RewardFunc:
    module_name, attr = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise RewardError(f"rl.rewards: cannot import {module_name!r} for reward {spec!r}: {err}") from None
    func = getattr(module, attr, None)
    if not callable(func):
        raise RewardError(f"rl.rewards: {module_name} has no function {attr!r} (reward {spec!r})")
    return func


def checked(func: RewardFunc, name: str) -> RewardFunc:
    """`func` under its config name (TRL logs rewards/<name>/mean), raising RewardError naming it when it raises or
    returns anything but one number (or None) per completion."""

    @functools.wraps(func)
    def reward(prompts, completions, **kwargs) -> list:
        try:
            values = func(prompts=prompts, completions=completions, **kwargs)
        except Exception as err:
            raise RewardError(f"reward {name!r} raised {type(err).__name__}: {err}") from err
        if not isinstance(values, (list, tuple)) or len(values) != len(completions):
            got = f"{len(values)} values" if isinstance(values, (list, tuple)) else type(values).__name__
            raise RewardError(f"reward {name!r} returned {got} for {len(completions)} completions (one number, or "
                              "None, per completion)")
        bad = [v for v in values if v is not None and not isinstance(v, (int, float))]
        if bad:
            raise RewardError(f"reward {name!r} returned {bad[0]!r}: rewards are numbers (or None)")
        return list(values)

    reward.__name__ = name.split(":")[-1]
    return reward


def probe_rewards(funcs: Sequence[RewardFunc], rows: Sequence[dict]) -> None:
    """Calls every reward once on a few rows, each answered with its own reference answer, before training:
    a reward that raises or returns the wrong length fails here (RewardError naming it), not after the first
    rollout."""
    rows = list(rows[:2])
    columns = {k: [r[k] for r in rows] for k in rows[0] if k != "prompt"}
    for func in funcs:
        func(prompts=[r["prompt"] for r in rows], completions=[str(r["answer"]) for r in rows],
             completion_ids=[[] for _ in rows], **columns)
