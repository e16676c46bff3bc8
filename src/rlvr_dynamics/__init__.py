"""rlvr_dynamics: the code of the executable companion to *On the optimization dynamics of RLVR:
Gradient gap and step size thresholds* (Suk & Duan). The folders are the architecture; a module
imports only from layers below it (import-linter contracts in ``pyproject.toml``):

- :mod:`~rlvr_dynamics.theory`    the paper's objects and every bound, pure torch functions
- :mod:`~rlvr_dynamics.engines`   batched simulators of the paper's instances (records in one vocabulary)
- :mod:`~rlvr_dynamics.lm`        the language-model stack: task, model, scoring, warm-up, TRL GRPO with tracking
- :mod:`~rlvr_dynamics.chapters`  one module per notebook: config, presets, summaries, tables, claim margins
- :mod:`~rlvr_dynamics.bench`     the benchmarks (``rlvr-book bench``, ``rlvr-book bench-lm``)
- :mod:`~rlvr_dynamics.book`      the machinery: parameters, chapter context, runner, appendix, result index, CLI

beside three support modules every layer may use: :mod:`~rlvr_dynamics.config` (config fields that are
notebook parameters), :mod:`~rlvr_dynamics.files` (atomic writes, provenance, project paths) and
:mod:`~rlvr_dynamics.devices`. The book's page *Where each result lives* maps every result to its code.
"""

__version__ = "0.1.0"
