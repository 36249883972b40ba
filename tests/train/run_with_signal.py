"""Test helper, run as a subprocess: trains a config and sends itself a signal right after checkpoint N is saved.

usage: python run_with_signal.py CONFIG STEP SIGNAL [key=value ...]
"""

import os
import signal
import sys

from transformers import TrainerCallback

from vistune.train.run.config import load_config
from vistune.train.stages.engine import train


class SignalAfterSave(TrainerCallback):
    def __init__(self, step: int, sig: signal.Signals):
        self.step, self.sig = step, sig

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os.kill(os.getpid(), self.sig)


if __name__ == "__main__":
    config, step, sig, *overrides = sys.argv[1:]
    result = train(load_config(config, overrides), callbacks=[SignalAfterSave(int(step), signal.Signals[sig])])
    print(f"STATUS {result.status} {result.global_step}", flush=True)
