"""ORPO and SimPO for the prefer stage: TRL's experimental ORPO / CPO trainers fed vistune's tokenised image pairs.

TRL 1.16 keeps both reference-free losses in `trl.experimental` (`ORPOTrainer.odds_ratio_loss`,
`CPOTrainer.cpo_loss` with `loss_type="simpo"`), in trainers written for text: `tokenize_row` tokenises text
columns and `concatenated_forward` calls the model with `input_ids` / `attention_mask` only (no `pixel_values`).
`ImagePairs` overrides exactly those two methods: rows arrive tokenised by vistune (stage-2 template and masking)
and the forward takes the collator's [chosen; rejected] rows with their images. TRL's `get_batch_logps` scores the
replies and TRL's `get_batch_loss_metrics` turns them into the loss and the logged rewards, margins and accuracy.
Neither loss has a reference model, so no reference forward runs and `full` keeps no frozen copy.
"""

from __future__ import annotations

import torch.nn.functional as F
from trl.experimental.cpo import CPOConfig, CPOTrainer
from trl.experimental.orpo import ORPOConfig, ORPOTrainer

from vistune import IGNORE_INDEX
from vistune.train.loop.trainer import VistuneTrainer

__all__ = ["CPOConfig", "ORPOConfig", "OddsRatioTrainer", "SimPOTrainer"]


class ImagePairs:
    """The two methods of TRL's ORPO / CPO trainers that assume text-only rows, for vistune's image pairs."""

    def average_logps(self) -> bool:
        """Whether the trainer's loss scores a reply by its mean token log-prob (else the sum), as TRL picks it."""
        raise NotImplementedError

    def tokenize_row(self, feature: dict, model=None) -> dict:
        """Rows are already tokenised (`vistune.data_prep.batching.preference.tokenize_dataset`): kept as they are."""
        return feature

    def concatenated_forward(self, model, batch: dict):
        """One forward of the [chosen; rejected] rows with their images -> (chosen logps, rejected logps, chosen
        logits, rejected logits, NLL of the chosen replies), the tuple TRL's `get_batch_loss_metrics` reads.
        The NLL covers the scored reply tokens, as stage 2 does (TRL's text ORPO also scores the prompt, which here
        is mostly image placeholder tokens with nothing to predict)."""
        n = batch["input_ids"].shape[0] // 2  # PreferenceCollator: all chosen rows, then all rejected rows
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values") if k in batch}
        logits = model(**inputs, use_cache=False).logits
        labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, IGNORE_INDEX)
        logps = self.get_batch_logps(logits, labels, average_log_prob=self.average_logps())
        nll = F.cross_entropy(logits[:n, :-1].flatten(0, 1).float(), labels[:n, 1:].flatten(),
                              ignore_index=IGNORE_INDEX)
        return logps[:n], logps[n:], logits[:n], logits[n:], nll


class _Loss(VistuneTrainer):
    """VistuneTrainer's loss seam to the TRL trainer after it in the MRO (its compute_loss stores the metrics)."""

    def loss_and_outputs(self, model, inputs: dict, num_items_in_batch=None):
        return super(VistuneTrainer, self).compute_loss(model, inputs), None


class OddsRatioTrainer(ImagePairs, _Loss, ORPOTrainer):
    """ORPO: NLL of the chosen reply - beta * log sigmoid(log odds ratio), on mean token log-probs (TRL's choice)."""

    def average_logps(self) -> bool:
        return True


class SimPOTrainer(ImagePairs, _Loss, CPOTrainer):
    """SimPO (CPOTrainer, loss_type="simpo"): -log sigmoid(beta * (mean logp chosen - mean logp rejected) - gamma),
    + cpo_alpha * NLL of the chosen reply."""

    def average_logps(self) -> bool:
        return self.loss_type in ("ipo", "simpo")  # CPOTrainer.concatenated_forward's own rule


def arguments(loss: str, beta: float, sft_weight: float, simpo_gamma: float, max_length: int) -> dict:
    """The TRL config class and loss fields of `loss` (orpo or simpo), for the engine's training_arguments."""
    if loss == "orpo":
        return {"cls": ORPOConfig, "beta": beta, "max_length": max_length}
    return {"cls": CPOConfig, "loss_type": "simpo", "beta": beta, "simpo_gamma": simpo_gamma,
            "cpo_alpha": sft_weight, "max_length": max_length}


TRAINERS = {"orpo": OddsRatioTrainer, "simpo": SimPOTrainer}
