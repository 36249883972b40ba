"""Test helper: train on the records in file order, so a test decides which samples meet in which step and rank.

As a script (under `deepspeed` / `accelerate launch`): `python -m tests.train.in_order train CONFIG key=value ...`
runs the `vistune` command with file order. With one sample list and `per_device_batch_size` b, step k of an
N-process run gives rank r the records [(k*N + r)*b, (k*N + r + 1)*b): a one-process run with batch N*b sees the
same samples per step.
"""

from __future__ import annotations

import sys

from torch.utils.data import SequentialSampler


def file_order(config, dataset):
    """Drop-in for `vistune.train.run.build.length_sampler_fn`: a factory of a sampler in file order."""
    return lambda args: SequentialSampler(dataset)


def use_file_order(monkeypatch=None) -> None:
    """Makes `vistune.train.stages.engine.train` sample in file order (via pytest's monkeypatch when given)."""
    import vistune.train.stages.engine as engine
    import vistune.train.stages.prefer as prefer

    for module, name in ((engine, "length_sampler_fn"), (prefer, "pair_sampler_fn")):
        if monkeypatch is not None:
            monkeypatch.setattr(module, name, file_order)
        else:
            setattr(module, name, file_order)


if __name__ == "__main__":
    from vistune.cli import main

    use_file_order()
    sys.exit(main(sys.argv[1:]))
