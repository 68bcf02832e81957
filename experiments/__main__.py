"""``python -m experiments list | run NAME|all [--tiny|--full [--smoke]] [--parts P] | plan NAME | report``.

``run`` writes ``DIR/NAME/`` (default ``results/NAME/``): the figure(s) as PNG
and ``metrics.json`` with the config, seed, package versions, device, wall
time (and each part's), the data used and a paper-vs-ours table whose rows
are marked agree / differs / not comparable, which is also printed. Each part
of an experiment shows a progress bar that stays on screen with its time.
``run all`` ends by writing the report (below).

Sizes, with times measured on the idle 2-core CPU development machine (load
average below 2; a busy machine is 2-4x slower; ``list`` gives each
experiment's own time):

* ``quick`` (default): 24 s (giapitzakis25) to 133 s (jacot18) per
  experiment; ``run all`` took 5 min 38 s to 5 min 57 s for the five (seeds
  7 and 8);
* ``--tiny`` (for tests; the numbers are not meaningful): 11-33 s per
  experiment, mostly JAX compilation, so not seconds; ``run all --tiny``
  took 95 s;
* ``--full``: the papers' settings, sized for a GPU/TPU and timed on the CPU
  for giapitzakis25 (22 min 23 s, loaded) and jacot18 (2 h 7 min in four
  runs, idle). Estimates of
  ``plan NAME --full`` on the 2-core CPU (docs/*.md): giapitzakis25 35 min,
  simon24_rf 38 min (plus about 13 h of Myrtle-10 kernel XLA does not
  count), jacot18 2 h, yang21_mup 21 h, yang23_dkm 42 h;
  ``--full --smoke`` runs them with every loop cut to one iteration
  (training steps, samples, trials) at the full shapes, to check on a CPU
  that a full run cannot fail of a shape, dtype or memory error (measured
  by ``NTK_FULL_SMOKE=1 pytest tests/test_experiments_smoke.py`` on the
  idle CPU: giapitzakis25 77 s (CPU busy), jacot18 3 min 18 s, simon24_rf
  2 min 19 s, yang21_mup 12 min 0 s, yang23_dkm 20 min 35 s).

``plan NAME|all [--tiny|--full]`` prints what each part will cost without
running it: its jitted steps' shapes, calls, FLOPs and peak memory from XLA's
ahead-of-time analysis and an estimated time on this device (see
`experiments.plan`).

``report`` collects every experiment's latest run in ``DIR`` into
``DIR/REPORT.md`` and a self-contained ``DIR/index.html`` (figures embedded).
``--set KEY=VALUE`` overrides a config field (tuples comma-separated).
``--parts P[,P]`` (``run`` and ``plan`` of one experiment) takes only those
parts and the earlier parts they read results from (``list`` names them), e.g.
``run yang21_mup --full --parts maml`` for one figure at the paper's size;
its ``metrics.json`` records the size as ``full --parts maml``.
``--data-dir DIR`` points the experiments that can use real datasets (text8,
Omniglot, CIFAR-10, UCI) at them; without it they use offline stand-ins.

A run is written to ``DIR/.NAME.staging-<run_id>/`` and renamed to
``DIR/NAME/`` when complete, so an interrupted run (Ctrl-C, SIGTERM) leaves
the previous results as they were. Exit status: 0 success; 1 an experiment
failed (its traceback is printed); 2 a usage error — unknown name, bad
option, unwritable ``--out``, a dataset missing from ``--data-dir`` — shown
as one ``error:`` line; 130 / 143 interrupted by SIGINT / SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from experiments import registry, report, results

_SIZE_HELP = {
    "full": "the papers' settings, sized for a GPU/TPU: `plan NAME --full` "
    "estimates on the 2-core CPU are 35 min (giapitzakis25), 38 min (simon24_rf, plus "
    "~13 h of Myrtle-10 kernel), 2 h (jacot18; measured: 2 h 7 min), 21 h (yang21_mup), "
    "42 h (yang23_dkm); "
    "run `plan NAME --full` for this device's estimate",
    "tiny": "smoke-test size for tests: 11–33 s per experiment on an idle 2-core CPU "
    "(compilation dominates; see `list`); numbers are not meaningful",
}


def _parse_set(items):
    overrides = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE; got {item!r}.")
        overrides[key.strip()] = value
    return overrides


def _add_size_options(parser, full_help: str, tiny_help: str) -> None:
    """``--full`` / ``--tiny`` (exclusive) into ``args.size``; "quick" without either."""
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--full", dest="size", action="store_const", const="full", help=full_help)
    size.add_argument("--tiny", dest="size", action="store_const", const="tiny", help=tiny_help)
    parser.set_defaults(size="quick")


def _add_parts_option(parser) -> None:
    parser.add_argument(
        "--parts",
        default=None,
        metavar="P[,P]",
        type=lambda text: tuple(p.strip() for p in text.split(",") if p.strip()),
        help="only these parts of one experiment, with the parts they need (names: `list`)",
    )


def _add_set_option(parser) -> None:
    """Repeatable ``--set KEY=VALUE`` into ``args.overrides`` (`_parse_set` reads it)."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set widths=64,256",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m experiments", description="Reproduce the papers' figures with ntk."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the registered experiments and their measured times")
    run = sub.add_parser(
        "run",
        help="run an experiment (or all of them, then write the report)",
        description="Run at the quick size unless --tiny or --full: 20 s to 135 s per "
        "experiment, 6 min for all five, on an idle 2-core CPU (see `list`).",
    )
    run.add_argument("name", help="experiment name, or 'all'")
    _add_size_options(run, _SIZE_HELP["full"], _SIZE_HELP["tiny"])
    run.add_argument(
        "--smoke",
        action="store_true",
        help="with --full: every loop (steps, samples, trials) cut to one "
        "iteration, shapes and data sizes kept full",
    )
    run.add_argument(
        "--out",
        default="results",
        help="results root; each experiment writes OUT/NAME/ (default: results)",
    )
    run.add_argument("--seed", type=int, default=None, help="PRNG seed (default: the config's own)")
    run.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help="directory with real datasets (text8, Omniglot, CIFAR-10, UCI); "
        "default: offline stand-ins",
    )
    _add_parts_option(run)
    _add_set_option(run)
    pl = sub.add_parser(
        "plan",
        help="print each part's shapes, FLOPs, peak memory and estimated time "
        "from XLA's cost analysis, without running it",
    )
    pl.add_argument("name", help="experiment name, or 'all'")
    _add_size_options(pl, "the papers' settings", "the tests' size")
    pl.add_argument("--smoke", action="store_true", help="with --full: the smoke run's loops")
    _add_parts_option(pl)
    _add_set_option(pl)
    rep = sub.add_parser(
        "report",
        help="write OUT/REPORT.md and OUT/index.html from the latest run of every experiment",
    )
    rep.add_argument("--out", default="results", help="results root (default: results)")
    return parser


def _list() -> None:
    for name in registry.names():
        exp = registry.get(name)
        head = f"{name:<15} {exp.description}"
        print(head if not exp.paper else f"{head} [{exp.paper}]")
        times = ", ".join(
            f"{s} ≈ {exp.seconds[s]:.0f} s" for s in registry.SIZES if s in exp.seconds
        )
        aliases = f"; formerly {', '.join(exp.aliases)}" if exp.aliases else ""
        if times or aliases:
            print(f"{'':<15} measured: {times or 'n/a'}{aliases}")
        print(f"{'':<15} parts: {', '.join(_part_label(p) for p in exp.parts)}")
    print(f"\n(times measured on {registry.MEASURED_ON})")
    print("(full: sized for a GPU/TPU; `plan NAME --full` estimates its time on this device)")


def _part_label(part) -> str:
    return f"{part.name} (needs {'+'.join(part.needs)})" if part.needs else part.name


def _canonical(name: str) -> str:
    """``name``, or the new name of a renamed experiment (with a note on stderr)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DeprecationWarning)
        new = registry.canonical(name)
    for w in caught:
        print(f"note: {w.message}", file=sys.stderr)
    return new


def _write_report(out) -> None:
    md, page = report.write(out)
    print(f"\nreport: {md} and {page}")


def _plan(args) -> None:
    from experiments import plan

    if args.smoke and args.size != "full":
        raise ValueError(f"--smoke: applies to --full only; got size {args.size!r}.")
    names = registry.names() if args.name == "all" else [_canonical(args.name)]
    if args.parts is not None and len(names) != 1:
        raise ValueError(f"--parts: selects parts of one experiment; got {args.name!r}.")
    experiments = [registry.get(n) for n in names]  # fail fast on a typo
    for exp in experiments:
        exp.select(args.parts)  # a part's typo too, before measuring throughput
    throughput = plan.measure()
    for exp in experiments:
        config = exp.config(args.size, overrides=_parse_set(args.overrides), smoke=args.smoke)
        parts = plan.plan_experiment(exp, config, throughput, parts=args.parts)
        label = f"{args.size} --smoke" if args.smoke else args.size
        print(plan.format_plan(exp, label, parts, throughput), flush=True)
        print()


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "list":
            _list()
            return 0
        if args.command == "plan":
            _plan(args)
            return 0
        if args.command == "report":
            if not os.path.isdir(args.out):
                raise ValueError(
                    f"--out: expected a results directory; {args.out!r} does "
                    f"not exist (run an experiment first)."
                )
            _write_report(args.out)
            return 0
        if args.smoke and args.size != "full":
            raise ValueError(f"--smoke: applies to --full only; got size {args.size!r}.")
        names = registry.names() if args.name == "all" else [_canonical(args.name)]
        if args.name != "all":
            exp = registry.get(names[0])  # fail fast, before any work, on a typo
            if args.data_dir is not None and not exp.uses_data_dir:
                raise ValueError(
                    f"--data-dir: {names[0]} uses only offline data "
                    f"and has no data_dir option; got {args.data_dir!r}."
                )
        if args.data_dir is not None and not os.path.isdir(args.data_dir):
            raise ValueError(
                f"--data-dir: expected an existing directory of datasets; "
                f"got {args.data_dir!r}, which "
                + ("is not a directory." if os.path.exists(args.data_dir) else "does not exist.")
            )
        outcome = registry.run_many(
            names,
            size=args.size,
            out_root=args.out,
            seed=args.seed,
            overrides=_parse_set(args.overrides),
            data_dir=args.data_dir,
            smoke=args.smoke,
            parts=args.parts,
        )
        if args.name == "all":
            _write_report(args.out)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except registry.DataDirError as e:
        print(f"error: --data-dir: {e}", file=sys.stderr)
        return 2
    except (registry.OutDirError, OSError) as e:
        if not isinstance(e, registry.OutDirError) and args.command != "report":
            raise
        print(f"error: --out: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; results of the unfinished run were discarded", file=sys.stderr)
        return 130
    except results.Terminated as e:
        print(
            f"terminated by signal {e.signum}; results of the unfinished run were discarded",
            file=sys.stderr,
        )
        raise
    failed = [n for n, err in outcome.items() if err is not None]
    if len(names) > 1:
        print(
            f"\nran {len(names)} experiment(s): {len(names) - len(failed)} ok"
            + (f", failed: {', '.join(failed)}" if failed else "")
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
