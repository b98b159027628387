"""pope's command-line apps (`pope-data`, `pope-eval`, `pope-train`), installed as `pope_cli`.

Each module builds one config object from options, calls the library, and owns the console.
"""
