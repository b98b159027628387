"""verl integration for POPE: reward function, pass@k advantage estimator, configs and launcher.

Installed with the `train` extra in its own venv (scripts/setup_train_env.sh); run via `pope-train`.
"""
