"""Reference-exact scorers, one module per family; each `score_*_rows` takes predictions-file rows."""

from vistune.eval.scorers.choice import parse_sqa_letter, score_sqa_rows
from vistune.eval.scorers.exact import normalize_gqa, normalize_short, score_gqa_rows, score_shapes_rows
from vistune.eval.scorers.mmbench import (
    DEFAULT_MMBENCH_RULE,
    MMBENCH_RULES,
    MatchRule,
    parse_mmbench_choice,
    score_mmbench_rows,
)
from vistune.eval.scorers.mme import parse_mme_answer, score_mme_rows
from vistune.eval.scorers.pope import binary_metrics, parse_yes_no, score_pope_rows
from vistune.eval.scorers.vqa import (
    normalize_evalai,
    normalize_vqa,
    score_vqa_rows,
    textvqa_accuracy,
    vizwiz_accuracy,
    vqav2_accuracy,
)

__all__ = [
    "DEFAULT_MMBENCH_RULE", "MMBENCH_RULES", "MatchRule", "binary_metrics", "normalize_evalai", "normalize_gqa",
    "normalize_short", "normalize_vqa",
    "parse_mme_answer", "parse_mmbench_choice", "parse_sqa_letter", "parse_yes_no", "score_gqa_rows",
    "score_mmbench_rows", "score_mme_rows", "score_pope_rows", "score_shapes_rows", "score_sqa_rows",
    "score_vqa_rows", "textvqa_accuracy", "vizwiz_accuracy", "vqav2_accuracy",
]
