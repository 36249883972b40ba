"""Terminal chat with a trained model about one image: multi-turn, or a single answer to `prompt`.

The conversation is rendered by the model's training template each turn (image at the front of the
first user turn), so the model sees exactly the format it was tuned on.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from vistune.eval.generate import Generator

QUIT = ("exit", "quit", "/exit", "/quit")


def chat(generator: Generator, image: str | None, prompt: str | None = None, *,
         read: Callable[[str], str] = input, write: Callable[[str], None] = print) -> list[tuple[str, str]]:
    """Answers `prompt` once, or loops reading user lines until EOF / 'exit'; returns the conversation."""
    from vistune.data_prep import load_image

    img = None
    if image:
        path = Path(image).resolve()
        img = load_image(path.name, path.parent)
    turns: list[tuple[str, str]] = []
    while True:
        if prompt is not None:
            text = prompt
        else:
            try:
                text = read("user> ").strip()
            except EOFError:
                break
            if not text:
                continue
            if text.lower() in QUIT:
                break
        turns.append(("user", text))
        rendered = generator.render(turns, 1 if img is not None else 0)
        reply = generator.generate([rendered], [img])[0]
        turns.append(("assistant", reply))
        write(reply if prompt is not None else f"assistant> {reply}")
        if prompt is not None:
            break
    return turns
