"""vistune.eval: benchmark runs with reference-exact scoring, scoring-only, run comparison, chat.

Other rooms use: BENCHMARKS (name -> loader + scorer), run_eval / EvalRunConfig, score_file, Generator.
"""

from vistune.eval.benchmarks import BENCHMARKS, Benchmark, get_benchmark
from vistune.eval.generate import GenerationSettings, Generator
from vistune.eval.items import EvalItem
from vistune.eval.report import compare_runs, format_table, score_file
from vistune.eval.runner import EvalRunConfig, run_eval

__all__ = [
    "BENCHMARKS", "Benchmark", "EvalItem", "EvalRunConfig", "GenerationSettings", "Generator", "compare_runs",
    "format_table", "get_benchmark", "run_eval", "score_file",
]
