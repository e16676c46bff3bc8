"""One module per notebook, with the notebook's name: its config and presets, and the summaries,
tables and claim margins it shows, each a tested function; the notebook narrates and calls them.
Chapter modules do not import each other; what they share is in
:mod:`~rlvr_dynamics.chapters.statistics`.
"""
