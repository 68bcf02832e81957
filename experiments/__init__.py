"""Paper reproductions built on ntk, one module per paper.

    python -m experiments list
    python -m experiments run NAME|all [--tiny|--full] [--out results] [--seed N]
    python -m experiments report [--out results]

See `experiments.registry` for the protocol an experiment follows (sizes
declared once, named parts returning metrics, marked paper-vs-ours rows and
figures), `experiments.results` for the atomic result files and the rows'
marks, and `experiments.report` for the report of every reproduction. Speed
benchmarks live in `experiments.benchmarks`
(``python -m experiments.benchmarks.kernels``). This package is run from the
repository; it is not installed with ``ntk``.
"""
