"""Generation configs as real checkpoints ship them: repaired so transformers will save them, and the plain greedy
decoding that evaluation and chat use whatever sampling settings a base carries.

lmsys/vicuna-7b-v1.5 ships `temperature 0.9, top_p 0.6` without `do_sample`; transformers 5 refuses to save such a
config once it is changed (compose sets its pad token), so every export of LLaVA-1.5's recipe failed at its end.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

# flags transformers only uses when sampling / when searching with several beams, with the value that
# GenerationConfig.validate lets stand without them (None: any value set is flagged)
SAMPLING_FLAGS = {"temperature": 1.0, "top_p": 1.0, "top_k": 50, "min_p": None, "top_h": None, "typical_p": 1.0,
                  "epsilon_cutoff": 0.0, "eta_cutoff": 0.0}
BEAM_FLAGS = {"early_stopping": False, "length_penalty": 1.0, "num_beam_groups": 1, "diversity_penalty": 0.0,
              "constraints": None}
_reported: set[tuple[str, str]] = set()  # (source, repair) already printed: each repair is printed once


def repair_generation_config(config, source: str = "the model"):
    """Makes `config` (a transformers GenerationConfig) one transformers accepts on save, in place, and returns it.

    Sampling-only flags without `do_sample: true` (and beam-only flags with one beam) are unset: generate() ignored
    them anyway, so decoding does not change. The repair is logged once per source.
    """
    def flagged(flags: dict) -> list[str]:
        return [name for name, neutral in flags.items() if getattr(config, name, None) not in (None, neutral)]

    unset = []
    if config.do_sample is not True:
        unset += flagged(SAMPLING_FLAGS)
    if (config.num_beams or 1) == 1:
        unset += flagged(BEAM_FLAGS)
    for name in unset:
        setattr(config, name, None)
    if unset:
        values = ", ".join(unset)
        if (source, values) not in _reported:
            _reported.add((source, values))
            log.warning("%s: generation config sets %s without do_sample / num_beams > 1 (transformers refuses to "
                        "save it); unset them, decoding is unchanged (greedy)", source, values)
    try:
        config.validate(strict=True)
    except ValueError as err:
        raise ValueError(f"{source}: generation_config.json is invalid and could not be repaired: {err}") from None
    return config


def decoding_settings(temperature: float = 0.0, top_p: float = 1.0) -> dict:
    """generate() keyword arguments for decoding exactly as asked: greedy when `temperature` is 0, else plain
    temperature / nucleus sampling; one beam and no repetition penalty either way. Every value is set because
    generate() fills each unset one from the model's generation config (Qwen2's samples with top_k 20 and
    repetition_penalty 1.05)."""
    sampling = temperature > 0
    return {"do_sample": sampling, "num_beams": 1, "temperature": temperature if sampling else 1.0,
            "top_p": top_p if sampling else 1.0, "top_k": 0 if sampling else 50, "typical_p": 1.0,
            "repetition_penalty": 1.0, "encoder_repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "min_length": 0,
            "length_penalty": 1.0}
