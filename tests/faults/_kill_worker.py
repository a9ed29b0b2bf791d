"""Subprocess for the kill -9 fault tests: a slow ``cache_activations`` or ``train-sae``.

Usage: python _kill_worker.py cache OUT_DIR SLEEP_SECONDS [hold]
       python _kill_worker.py train STORE OUT_DIR SLEEP_SECONDS [hold]

``cache`` is the store's own resume worker (tests/store/_resume_worker.py); ``train`` runs
the real ``hiddenlens train-sae`` command with every store batch delayed, so the parent
can kill it between checkpoints. ``hold``: the run blocks before it could finish (cache: at
its last batch; train: once 9 of its 10 checkpoints are written) until it is killed, so the
kill lands mid-run however late a loaded machine lets the parent look.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

TRAIN_ARGS = [
    "--hook", "1", "--d-sae", "48", "--k", "3", "--total-tokens", "2560",
    "--batch-size", "64", "--lr", "0.003", "--lr-warmup-steps", "2",
    "--checkpoint-every", "4", "--eval-rows", "200", "--seed", "0",
]  # fmt: skip


HOLD_AT = 9  # complete checkpoints (of 10) after which a held run waits to be killed


def _checkpoints(out: str) -> int:
    return sum(1 for p in (Path(out) / "checkpoints").glob("step_*") if (p / "state.json").exists())


def train(store: str, out: str, seconds: float, hold: bool = False) -> int:
    from hiddenlens.cli import main
    from hiddenlens.store import ActivationStore

    real = ActivationStore.batches

    def slow(self, *args, **kwargs):
        for batch in real(self, *args, **kwargs):
            while hold and _checkpoints(out) >= HOLD_AT:
                time.sleep(1)
            time.sleep(seconds)
            yield batch

    ActivationStore.batches = slow
    return main(["train-sae", "--store", store, "--out", out, *TRAIN_ARGS])


if __name__ == "__main__":
    if sys.argv[1] == "cache":
        from tests.store._resume_worker import run

        run(sys.argv[2], float(sys.argv[3]), sys.argv[4:] == ["hold"])
    else:
        sys.exit(train(sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5:] == ["hold"]))
