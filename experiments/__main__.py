"""``python -m experiments list | run NAME|all [--full] [--out DIR] [--seed N]``.

``run`` writes ``DIR/NAME/`` (default ``results/NAME/``): the figure(s) as PNG
and ``metrics.json`` with the config, seed, package versions, device, wall
time and a paper-vs-ours table, which is also printed. Sizes: ``quick``
(default; about a minute per experiment on 2 CPU cores), ``--full`` (the
papers' settings, meant for a GPU/TPU) and ``--tiny`` (seconds; for tests).
``--set KEY=VALUE`` overrides a config field (tuples comma-separated).
``--data-dir DIR`` points the experiments that can use real datasets (text8,
Omniglot, CIFAR-10, UCI) at them; without it they use offline stand-ins.
"""

from __future__ import annotations

import argparse
import sys

from experiments import registry


def _parse_set(items):
    overrides = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE; got {item!r}.")
        overrides[key.strip()] = value
    return overrides


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m experiments",
        description="Reproduce the papers' figures with ntk.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the registered experiments")
    run = sub.add_parser("run", help="run an experiment (or all of them)")
    run.add_argument("name", help="experiment name, or 'all'")
    size = run.add_mutually_exclusive_group()
    size.add_argument("--full", dest="size", action="store_const", const="full",
                      help="the paper's setting (slow; for a GPU/TPU)")
    size.add_argument("--tiny", dest="size", action="store_const", const="tiny",
                      help="smoke-test size (seconds); numbers are not meaningful")
    run.set_defaults(size="quick")
    run.add_argument("--out", default="results",
                     help="results root; each experiment writes OUT/NAME/ (default: results)")
    run.add_argument("--seed", type=int, default=None,
                     help="PRNG seed (default: the config's own)")
    run.add_argument("--data-dir", default=None, metavar="DIR",
                     help="directory with real datasets (text8, Omniglot, CIFAR-10, UCI); "
                          "default: offline stand-ins")
    run.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE",
                     help="override a config field, e.g. --set widths=64,256")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "list":
            for name in registry.names():
                exp = registry.get(name)
                head = f"{name:<20} {exp.description}"
                print(head if not exp.paper else f"{head} [{exp.paper}]")
            return 0
        names = registry.names() if args.name == "all" else [args.name]
        if args.name != "all":
            exp = registry.get(args.name)  # fail fast, before any work, on a typo
            if args.data_dir is not None and not exp.uses_data_dir:
                raise ValueError(f"--data-dir: {args.name} uses only offline data "
                                 f"and has no data_dir option; got {args.data_dir!r}.")
        outcome = registry.run_many(names, size=args.size, out_root=args.out,
                                    seed=args.seed, overrides=_parse_set(args.overrides),
                                    data_dir=args.data_dir)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    failed = [n for n, err in outcome.items() if err is not None]
    if len(names) > 1:
        print(f"\nran {len(names)} experiment(s): {len(names) - len(failed)} ok"
              + (f", failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
