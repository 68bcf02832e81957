"""Speed and memory benchmarks against the anchors (NT in its reference env).

python -m experiments.benchmarks.kernels [--nt-python PATH] [--repeats N]
"""
