"""The TRL backend's modules: GRPO in-process on one machine (CPU included).

adapter.py (the `TrainBackend` registered as `trl`), backend.py (options, plan, run), trainer.py
(the guided GRPOTrainer and its callbacks), eval.py (evaluation during training), metrics.py
(metrics.jsonl, metrics.png), sft.py (the SFT stage).
"""
