"""vistune.bench: `vistune bench`, interleaved training-speed comparisons reported as per-pair ratios.

`runner` times variants of a run config through the real training engine, `report` prints the ratios,
`workload` builds the benchmark's parts and data (`python -m vistune.bench.workload runs/bench`).
"""
