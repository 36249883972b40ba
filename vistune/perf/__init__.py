"""vistune.perf: what a training step costs and how fast it ran.

Architecture numbers (`arch`), the one FLOP model (`flops`) that the planner and the benchmark share, device
peaks (`peak`, `gpus`), the per-GPU memory model (`memory`: the planner's fit and the run's checkpointing
decision) and the per-step meter (`meter`: tokens/s, padding, data wait, MFU in log.jsonl).
"""
