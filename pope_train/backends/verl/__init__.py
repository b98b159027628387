"""The verl backend's modules: GRPO with verl's trainer on a Ray cluster (GPUs).

adapter.py (the `TrainBackend` registered as `verl`), launch.py (the verl commands and configs).
"""
