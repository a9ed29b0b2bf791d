"""The ``hiddenlens`` command line: parse arguments, then call the library.

    hiddenlens hooks MODEL [--match GLOB] [--device cuda]
    hiddenlens cache --model minilm --data demo --hooks 'encoder.layer.*' --out runs/minilm
    hiddenlens train-sae --store runs/minilm --hook encoder.layer.3 --out runs/sae
    hiddenlens report RUN_DIR
    hiddenlens report --compare RUN_A RUN_B ... [--out DIR]
    hiddenlens run EXPERIMENT [--out DIR]
    hiddenlens analyze RUN.toml --out DIR      (or a bundled config: demo, tinylm)

Every long job shows a progress bar and can be interrupted with Ctrl-C; re-running the
same command resumes where it stopped.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from pathlib import Path

EXIT_INTERRUPTED = 130
MODEL_HELP = (
    "'minilm', a Hugging Face model directory or cached id, 'tl:<dir or TransformerLens "
    "name>' or 'pkg.module:factory'"
)
EXIT_ERROR = 2  # bad input or a failed file operation: a one-line message, no traceback


def _int_at_least(low: int):
    """An argparse ``type`` accepting integers >= ``low`` (checked before any work)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is out of range: accepted >= {low}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def _cmd_hooks(args: argparse.Namespace) -> int:
    from hiddenlens.hooks import hook_points, load_model, resolve_hook_points

    handle = load_model(args.model, device=args.device)
    names = resolve_hook_points(handle, args.match) if args.match else hook_points(handle)
    for name in names:
        sys.stdout.write(name + "\n")
    return 0


def _cmd_cache(args: argparse.Namespace) -> int:
    from hiddenlens.data import as_data
    from hiddenlens.hooks import load_model
    from hiddenlens.store import cache_activations

    if args.max_docs is not None and args.max_docs < 1:
        raise ValueError(f"--max-docs must be a positive number of documents, got {args.max_docs}")
    source = as_data(args.data, text_column=args.text_column, labels=args.labels)
    if args.max_docs:
        source = source.take(args.max_docs)
    handle = load_model(args.model, device=args.device)
    store = cache_activations(
        handle,
        source,
        args.hooks,
        args.out,
        batch_size=args.batch_size,
        max_rows=args.max_rows,
        seq_len=args.seq_len,
        dtype=args.dtype,
        overwrite=args.overwrite,
        progress=True,
    )
    sys.stdout.write(
        f"cached {len(store):,} rows x {len(store.hook_points)} hook points -> {args.out}\n"
    )
    return 0


def _cmd_train_sae(args: argparse.Namespace) -> int:
    from hiddenlens.sae.cli import train_from_args

    return train_from_args(args)


def _cmd_report(args: argparse.Namespace) -> int:
    if args.compare:
        from hiddenlens.report.compare import compare_runs

        if args.run_dir is not None:
            raise SystemExit("hiddenlens report: give RUN_DIR or --compare RUN ..., not both")
        path = compare_runs(args.compare, args.out or Path("comparison"))
        sys.stdout.write(f"comparison written to {path}\n")
        return 0
    from hiddenlens.report.rebuild import rebuild_report

    if args.run_dir is None:
        raise SystemExit("hiddenlens report: give RUN_DIR (or --compare RUN_A RUN_B ...)")
    path = rebuild_report(args.run_dir)
    sys.stdout.write(f"report written to {path}\n")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from hiddenlens.report.experiments import run_experiment

    return run_experiment(args.experiment, args.out, extra=args.extra)


def _cmd_analyze(args: argparse.Namespace) -> int:
    from hiddenlens.analyze import analyze, bundled_config

    config = args.config
    if not Path(config).exists() and not config.endswith(".toml"):
        config = bundled_config(config)
    result = analyze(config, args.out, progress=not args.quiet)
    done = ", ".join(f"{k}: {v}" for k, v in result.stages.items())
    sys.stdout.write(f"report: {result.report}\nstages: {done}\n")
    if result.failed:
        sys.stderr.write(f"sections that failed: {', '.join(result.failed)}\n")
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hiddenlens", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("hooks", help="list a model's hook points")
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("--match", help="only names matching this glob (e.g. 'encoder.layer.*')")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cpu)")
    p.set_defaults(func=_cmd_hooks)

    p = sub.add_parser("cache", help="cache activations to an on-disk store (resumable)")
    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument(
        "--data",
        required=True,
        help="'demo', a .txt file, a .jsonl file or a saved HF dataset directory",
    )
    p.add_argument("--hooks", required=True, nargs="+", help="hook points or globs")
    p.add_argument("--out", required=True, type=Path, help="store directory")
    p.add_argument("--batch-size", type=_int_at_least(1), default=32)
    p.add_argument("--max-rows", type=_int_at_least(1), default=None)
    p.add_argument("--max-docs", type=int, default=None, help="use only the first N documents")
    p.add_argument(
        "--seq-len", type=_int_at_least(2), default=None, help="truncate sequences to N tokens"
    )
    p.add_argument("--dtype", default="float32", choices=["float32", "float16"])
    p.add_argument("--text-column", default="text")
    p.add_argument(
        "--labels", nargs="+", default=None, help="label columns of a .jsonl or dataset (kept per row)"
    )
    p.add_argument("--device", default=None, help="cpu, cuda (cuda:LOCAL_RANK under torchrun)")
    p.add_argument("--overwrite", action="store_true", help="replace a different run in --out")
    p.set_defaults(func=_cmd_cache)

    p = sub.add_parser("train-sae", help="train a sparse autoencoder on a store")
    _add_train_sae_args(p)
    p.set_defaults(func=_cmd_train_sae)

    p = sub.add_parser(
        "report", help="rebuild report.html from a run's saved results, or compare runs"
    )
    p.add_argument("run_dir", type=Path, nargs="?", default=None)
    p.add_argument(
        "--compare",
        type=Path,
        nargs="+",
        metavar="RUN",
        help="write one page comparing these runs (metrics side by side, SAE frontier)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where --compare writes its page (default: ./comparison)",
    )
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("run", help="run an experiment from experiments/ and write its report")
    p.add_argument("experiment", help="experiment folder name, e.g. codebook_fsm or demo")
    p.add_argument("--out", type=Path, default=None, help="output directory (runs/NAME)")
    p.add_argument("extra", nargs=argparse.REMAINDER, help="arguments passed to the experiment")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("analyze", help="cache, train SAEs, run the analyzers, write one report")
    p.add_argument("config", help="a run config (.toml) or a bundled one: demo, tinylm")
    p.add_argument("--out", required=True, type=Path, help="run directory (resumable)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_analyze)
    return parser


def _add_train_sae_args(p: argparse.ArgumentParser) -> None:
    try:
        from hiddenlens.sae.cli import add_train_args
    except ImportError:  # the sae package is optional at parse time
        p.add_argument("rest", nargs=argparse.REMAINDER)
        return
    add_train_args(p)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted; re-run the same command to resume\n")
        return EXIT_INTERRUPTED
    except (OSError, ValueError, TypeError) as err:
        return _report_error(err, verbose=args.verbose)


def _report_error(err: BaseException, *, verbose: bool) -> int:
    """One line on stderr (the traceback too with ``-v``); returns the exit code."""
    if verbose:
        traceback.print_exception(err, file=sys.stderr)
    message = " ".join(str(err).split()) or type(err).__name__
    sys.stderr.write(f"hiddenlens: error: {message}\n")
    return EXIT_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
