"""Training for POPE: the recipe table, backends (verl, TRL) behind one interface, reward, pass@k advantage.

`pope_train.recipes.RECIPES` says what each config trains on and where it runs; `pope_train.backends.BACKENDS`
holds the backends `pope-train run --backend NAME` uses (verl in its own venv, TRL in the main one).
"""
