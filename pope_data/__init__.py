"""pope_data: curate hard sets, find minimal oracle prefixes, export guided datasets.

Layers: sources -> segments -> search (pure) -> service (engines, journal) -> export -> hub.
"""

__version__ = "0.1.0"
