"""Training for POPE: verl integration (reward, pass@k advantage, configs, launcher) and a TRL backend.

verl runs in its own venv (scripts/setup_train_env.sh); the TRL backend (`pope_train.trl_backend`,
extra `trl`) runs in the main venv on one machine. Both via `pope-train run --backend verl|trl`.
"""
