"""The main job: cache MiniLM activations on the bundled corpus, run every analyzer, write
one report.

    python -m experiments.demo.run --out runs/demo [--fast]

Each analyzer contributes a section (experiments/demo/<name>_section.py). A section that
fails is reported in the page with its error, and the run exits non-zero.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time
import traceback
from pathlib import Path

from experiments.demo.context import DemoContext

SECTIONS = (
    "activations",
    "sae",
    "probe",
    "collapse",
    "info",
    "shortcut",
    "attribution",
    "codebook",
)
HOOKS = "encoder.layer.*"
# The numbers lifted into the report's summary (when the section produced them).
HEADLINE = (
    "sae/fvu/encoder.layer.3",
    "sae/embed_cos_score/encoder.layer.3",
    "codebook/embedding_cosine_finetuned",
    "codebook/code_f1/is_digit",
    "codebook/neuron_f1/is_digit",
    "probe/cka/encoder.layer.0~encoder.layer.5",
    "collapse/nc1/encoder.layer.0",
    "collapse/nc1/encoder.layer.5",
    "collapse/ufm_nc1",
    "info/ixt_binning/encoder.layer.5",
    "shortcut/bias/linear",
    "shortcut/bias/relu",
    "shortcut/erm_worst_group_acc",
    "shortcut/dfr_worst_group_acc",
    "attribution/ig_completeness_max_abs_delta",
    "attribution/patching_pearson",
)
logger = logging.getLogger("hiddenlens.demo")


def build_context(out: Path, *, fast: bool, seed: int = 0) -> DemoContext:
    import hiddenlens
    from hiddenlens.corpus import demo_corpus, token_properties
    from hiddenlens.report import Report

    handle = hiddenlens.load_model("minilm")
    texts = demo_corpus(max_docs=120 if fast else None)
    max_rows = 3_000 if fast else 100_000
    t0 = time.perf_counter()
    store = hiddenlens.cache_activations(
        handle,
        texts,
        HOOKS,
        out / "store",
        batch_size=32,
        max_rows=max_rows,
        seq_len=256,
        progress=not fast,
    )
    cache_s = time.perf_counter() - t0
    meta = store.meta
    labels = token_properties(
        handle.tokenizer, texts, meta["sample_idx"], meta["position"], seq_len=256
    )
    labels["token_id"] = meta["token_id"]
    report = Report(
        "hiddenlens demo: all-MiniLM-L6-v2 on the bundled corpus",
        config={"hooks": HOOKS, "max_rows": max_rows, "fast": fast, "seed": seed},
    )
    section = report.add_section("Activations")
    section.add_text(
        f"Cached {len(store):,} token rows from {len(set(meta['sample_idx'].tolist())):,} "
        f"documents of the bundled corpus (Python documentation prose) at "
        f"{len(store.hook_points)} hook points in {cache_s:.1f} s."
    )
    section.add_metrics(
        {f"activations/mean_norm/{h}": store.stats(h)["mean_norm"] for h in store.hook_points}
    )
    return DemoContext(
        handle, store, list(store.hook_points), texts, labels, report, out, seed=seed, fast=fast
    )


def run_sections(ctx: DemoContext, names=SECTIONS) -> list[str]:
    """Run each available section; returns the names of those that failed."""
    failed, timings = [], {}
    for name in names:
        try:
            module = importlib.import_module(f"experiments.demo.{name}_section")
        except ModuleNotFoundError as err:
            if err.name == f"experiments.demo.{name}_section":
                logger.info("no %s section yet; skipped", name)
                continue
            raise
        t0 = time.perf_counter()
        try:
            module.run(ctx)
        except Exception:  # noqa: BLE001 - a broken section must not hide the others
            failed.append(name)
            ctx.report.add_section(f"{name}: failed").add_text(traceback.format_exc())
            logger.exception("section %s failed", name)
        timings[name] = time.perf_counter() - t0
        logger.info("section %s done in %.1f s", name, time.perf_counter() - t0)
    ctx.report.add_section("Run time").add_metrics(
        {f"run/seconds/{k}": v for k, v in timings.items()},
        caption="Wall-clock seconds per section on this machine.",
    )
    found = ctx.report.all_metrics()
    ctx.report.add_metrics({k: found[k] for k in HEADLINE if k in found})
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/demo"))
    parser.add_argument("--fast", action="store_true", help="tiny settings (used by the tests)")
    parser.add_argument("--sections", nargs="*", default=list(SECTIONS))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    t0 = time.perf_counter()
    ctx = build_context(args.out, fast=args.fast)
    failed = run_sections(ctx, args.sections)
    ctx.report.add_metrics({"run/seconds/total": time.perf_counter() - t0})
    path = ctx.report.write(args.out)
    sys.stdout.write(f"report: {path}\n")
    if failed:
        sys.stderr.write(f"sections that failed: {', '.join(failed)}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
