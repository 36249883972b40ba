"""vistune.plan: `vistune plan`, per-GPU memory and hours per epoch for a recipe before any GPU is rented.

Reads the recipe (`vistune.train.run.config`), the architecture and FLOP model (`vistune.perf`) and published or
measured dataset statistics (`datasets`) and the per-GPU memory model (`vistune.perf.memory`); `planner` is the search.
"""
