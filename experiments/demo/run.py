"""The main job on the bundled demo config: MiniLM on the bundled corpus, every analyzer,
one report. ``make demo`` runs the same thing as ``hiddenlens analyze demo --out runs/demo``.

    python -m experiments.demo.run --out runs/demo [--fast]

``--fast`` shrinks every setting (used by the tests). The sections live in the library
(``hiddenlens/analyze/sections/``); the config is ``hiddenlens/analyze/configs/demo.toml``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

# Tiny settings for a smoke run: same sections, ~3k token rows.
FAST = {
    "data": {"max_rows": 3000, "max_docs": 120},
    "activations": {"docs": 16},
    "sae": {"total_tokens": 5120, "batch_size": 256, "eval_rows": 2000, "eval_docs": 8,
            "expansion": 1, "top_latents": 2},
    "probe": {"rows": 800, "mdl_rows": 400, "cka_rows": 500, "n_boot": 20, "max_iter": 100},
    "collapse": {"ufm_steps": 400},
    "info": {"rows": 800, "ixt_rows": 256},
    "shortcut": {"rows": 600, "steps": 30},
    "attribution": {"examples": 2, "n_steps": 8, "hooks": ["encoder.layer.0", "encoder.layer.5"]},
    "codebook": {"n_codes": 64, "k": 4, "init_rows": 1024, "steps": 2, "batch": 4, "seq_len": 32,
                 "search_rows": 3000, "max_seconds": 3.0, "eval_docs": 4},
}


def config(*, fast: bool) -> dict:
    """The bundled demo config as a dict (with the fast overrides when asked)."""
    from hiddenlens.analyze import bundled_config
    from hiddenlens.analyze.config import read_toml

    raw = read_toml(bundled_config("demo"))
    if fast:
        for table, values in FAST.items():
            raw[table].update(values)
    return raw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/demo"))
    parser.add_argument("--fast", action="store_true", help="tiny settings (used by the tests)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from hiddenlens.analyze import analyze

    result = analyze(config(fast=args.fast), args.out, progress=not args.fast)
    sys.stdout.write(f"report: {result.report}\n")
    if result.failed:
        sys.stderr.write(f"sections that failed: {', '.join(result.failed)}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
