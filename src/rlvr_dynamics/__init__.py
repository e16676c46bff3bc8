"""rlvr_dynamics: the algorithm code of the executable companion to
*On the optimization dynamics of RLVR: Gradient gap and step size thresholds* (Suk & Duan).

Modules, one concept each:

- :mod:`~rlvr_dynamics.gaps`       J, log-odds, g⁺, g⁻, Gradient Gap, identity (10), alignment (11), Var± (17)
- :mod:`~rlvr_dynamics.policies`   linear-softmax bandits and token-level autoregressive policies
- :mod:`~rlvr_dynamics.estimators` REINFORCE (4), GRPO (5), Dr. GRPO update directions, exact and sampled
- :mod:`~rlvr_dynamics.identity`   the Gradient-Gap chapter's random instances and three-way checks
- :mod:`~rlvr_dynamics.params`     notebook parameter specs, presets and validation
- :mod:`~rlvr_dynamics.notebooks`  the registry of the book's notebooks
- :mod:`~rlvr_dynamics.results`    metrics.json, claim records, atomic writes
- :mod:`~rlvr_dynamics.plotting`   one seaborn theme; figures saved as PNG + SVG
- :mod:`~rlvr_dynamics.runner`     papermill execution, result cache, book staging
- :mod:`~rlvr_dynamics.cli`        the ``rlvr-book`` console script
- :mod:`~rlvr_dynamics.interrupt`  Ctrl-C: stop the kernels, one line, exit 130
"""

__version__ = "0.1.0"
