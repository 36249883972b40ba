"""User rewards for tests/train/test_rl.py, named in configs as `tests.train.rl_rewards:<function>`."""

SEEN: list[dict] = []  # every call of `record`: the ids and completions it was given


def record(prompts, completions, completion_ids, id, **columns):  # noqa: A002 (the dataset column TRL passes)
    SEEN.append({"ids": list(id), "completions": list(completions), "prompts": list(prompts)})
    return [0.0] * len(completions)


def broken(prompts, completions, **columns):
    raise KeyError("score")


def short(prompts, completions, **columns):
    return [1.0] * (len(completions) - 1)


def length(prompts, completions, **columns):
    """A reward that differs within nearly every group of samples: the completion's length in characters."""
    return [float(len(c)) for c in completions]
