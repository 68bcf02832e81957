"""Paper reproductions built on ntk, one module per paper.

    python -m experiments list
    python -m experiments run NAME|all [--full] [--out results] [--seed N]

See `experiments.registry` for how a paper module registers itself and
`experiments.results` for the atomic result files. Speed benchmarks live in
`experiments.benchmarks` (``python -m experiments.benchmarks.kernels``).
This package is run from the repository; it is not installed with ``ntk``.
"""
