"""rlvr_dynamics: the algorithm code of the executable companion to
*On the optimization dynamics of RLVR: Gradient gap and step size thresholds* (Suk & Duan).

Modules, one concept each:

- :mod:`~rlvr_dynamics.theory.gaps`       J, log-odds, g⁺, g⁻, Gradient Gap, identity (10), alignment (11), Var± (17)
- :mod:`~rlvr_dynamics.theory.policies`   linear-softmax bandits and token-level autoregressive policies
- :mod:`~rlvr_dynamics.theory.estimators` REINFORCE (4), GRPO (5), Dr. GRPO update directions, exact and sampled
- :mod:`~rlvr_dynamics.chapters.gradient_gap`   the Gradient-Gap chapter's random instances and three-way checks
- :mod:`~rlvr_dynamics.book.params`     notebook parameter specs, presets and validation
- :mod:`~rlvr_dynamics.book.registry`  the registry of the book's notebooks
- :mod:`~rlvr_dynamics.book.results`    metrics.json, claim records, atomic writes
- :mod:`~rlvr_dynamics.book.plotting`   one seaborn theme; figures saved as PNG + SVG
- :mod:`~rlvr_dynamics.book.runner`     papermill execution, result cache, book staging
- :mod:`~rlvr_dynamics.book.cli`        the ``rlvr-book`` console script
- :mod:`~rlvr_dynamics.book.interrupt`  Ctrl-C: stop the kernels, one line, exit 130
"""

__version__ = "0.1.0"
