"""The training loop: HF `Trainer` changed only where LLaVA needs it, and what runs inside it (chunked cross-entropy,
the supervision guard, callbacks, the rl stage's reward functions). Knows nothing of the run config."""

from vistune.train.loop.trainer import NonFiniteLoss, VistuneTrainer

__all__ = ["NonFiniteLoss", "VistuneTrainer"]
