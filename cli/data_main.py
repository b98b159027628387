"""`python -m pope_cli.data_main` runs `pope-data` (for environments without the console script).

Used by tests that start a build as a subprocess.
"""

from pope_cli.data import app

if __name__ == "__main__":
    app()
