"""pope_eval: run a model on math problems, grade the answers, and score pass@k.

Import the submodules you need (`pope_eval.engines`, `pope_eval.grading`, `pope_eval.passk`, ...).
"""

__version__ = "0.1.0"
