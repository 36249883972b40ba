"""`python kill_harness.py POINT STEP vistune-args...`: runs `vistune` and SIGKILLs itself at POINT of the save of
checkpoint-STEP, deterministically, by wrapping library functions in this process only (no seam in vistune):

- `file`:     half-way through writing optimizer.pt (the file is cut to half its size first);
- `manifest`: every file staged and fsynced, before manifest.json is written;
- `rename`:   manifest written in the staging dir, before the atomic rename to checkpoint-STEP.
"""

from __future__ import annotations

import os
import signal
import sys


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> int:
    point, step, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    target = f"checkpoint-{step}"
    import torch

    from vistune.train.loop import trainer
    from vistune.train.saving import checkpoint

    if point == "file":
        save = torch.save

        def torch_save(obj, f, *a, **k):
            save(obj, f, *a, **k)
            if isinstance(f, (str, os.PathLike)) and target in str(f) and str(f).endswith("optimizer.pt"):
                os.truncate(f, os.path.getsize(f) // 2)
                _die()

        torch.save = torch_save
    elif point in ("manifest", "rename"):
        # patched where the trainer's save looks the function up
        module, name = (trainer, "write_manifest") if point == "manifest" else (checkpoint, "publish")
        original = getattr(module, name)

        def wrapped(directory, *a, **k):
            if target in str(directory):
                _die()
            return original(directory, *a, **k)

        setattr(module, name, wrapped)
    else:
        raise SystemExit(f"unknown kill point {point!r}")
    from vistune.cli import main as vistune

    return vistune(args)


if __name__ == "__main__":
    sys.exit(main())
