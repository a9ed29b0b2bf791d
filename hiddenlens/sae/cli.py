"""``hiddenlens train-sae``: arguments generated from the config dataclasses, then ``train``.

Every field of :class:`~hiddenlens.sae.config.SAEConfig` (but ``d_in``, read from the
store, and the provenance fields) and of :class:`~hiddenlens.sae.config.TrainConfig`
becomes a flag with the field's own default and documentation, so the command's defaults
cannot drift from the library's. Everything is validated before any work starts (the
configs are built before the store is read). Under ``torchrun`` the process group is
initialised from the environment (gloo on CPU, NCCL on CUDA) and every rank trains on its
slice of each global batch. Parsing imports neither torch nor the architectures.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
from pathlib import Path
from typing import Any

from hiddenlens.sae import registry

#: Fields that are not flags: read from the store, or not a command-line value.
_NOT_FLAGS = {"d_in", "d_out", "hook_point", "model_id", "extra"}
#: Older spellings kept working.
_ALIASES = {"l1_coefficient": ["--l1"], "num_threads": ["--threads"]}
#: Flags that take several values: the command trains the grid of all combinations.
_GRID = {"architecture", "k", "d_sae"}
#: The library has no default for k (TopK needs it); the command's is this.
CLI_K = 32
#: What an unset flag means where the field's default is None.
_UNSET = {"k": f"{CLI_K} for the TopK family", "d_sae": "--expansion * d"}


def positive_int(text: str) -> int:
    """argparse type: an int >= 1 (so 0 or -3 is refused before any work)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def field_docs(cls) -> dict[str, str]:
    """Field name -> its text from the ``Fields:`` section of ``cls``'s docstring."""
    doc = (cls.__doc__ or "").split("Fields:", 1)[-1]
    out: dict[str, str] = {}
    names: list[str] = []
    for line in doc.splitlines():
        m = re.match(r"^ {8}([\w, /]+):\s*(.*)$", line)
        if m:
            names = [n for n in re.split(r"[,/ ]+", m.group(1)) if n]
            for n in names:
                out[n] = m.group(2).strip()
        elif line.startswith(" " * 12) and names:
            for n in names:
                out[n] += " " + line.strip()
    return out


def _choices(cls, name: str) -> tuple | None:
    if name == "architecture":
        return tuple(registry.names())
    return getattr(cls, "CHOICES", {}).get(name)


def _add_field(p: argparse.ArgumentParser, cls, f: dataclasses.Field, doc: str) -> None:
    flag = "--" + f.name.replace("_", "-")
    flags = [flag, *_ALIASES.get(f.name, [])]
    default = f.default if f.default is not dataclasses.MISSING else None
    if f.name == "normalize_activations":
        flags.append("--normalize")  # so the old --no-normalize still works
    kind = str(f.type)
    doc = doc.replace("%", "%%")
    shown = _UNSET.get(f.name, default)
    kw: dict[str, Any] = {"dest": f.name, "default": default, "help": f"{doc} (default {shown})"}
    if kind == "bool":
        kw["action"] = argparse.BooleanOptionalAction
        kw["help"] = doc
    elif kind.startswith("list[int]"):
        kw.update(nargs="+", type=positive_int)
    elif kind.startswith("tuple[float"):
        kw.update(nargs=2, type=float, metavar=("B1", "B2"))
    elif kind.startswith("int"):
        kw["type"] = positive_int if f.name in ("d_sae", "k") else int
    elif kind.startswith("float"):
        kw["type"] = float
    if f.name in _GRID:
        kw["nargs"] = "+"
    choices = _choices(cls, f.name)
    if choices:
        kw["choices"] = choices
    p.add_argument(*flags, **kw)


def add_config_args(p: argparse.ArgumentParser, cls) -> None:
    """One flag per field of dataclass ``cls`` (but ``_NOT_FLAGS``), with its defaults."""
    docs = field_docs(cls)
    group = p.add_argument_group(f"{cls.__name__} fields")
    for f in dataclasses.fields(cls):
        if f.name not in _NOT_FLAGS:
            _add_field(group, cls, f, docs.get(f.name, ""))


def add_train_args(p: argparse.ArgumentParser) -> None:
    """Arguments of ``hiddenlens train-sae``."""
    from hiddenlens.sae.config import SAEConfig, TrainConfig

    p.add_argument("--store", type=Path, required=True, help="activation store directory")
    p.add_argument("--hook", required=True, nargs="+", help="hook point(s) cached in the store")
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output directory (SAELens format); with several SAEs one sub-directory each",
    )
    p.add_argument(
        "--expansion",
        type=positive_int,
        nargs="+",
        default=8,
        help="d_sae = expansion * d without --d-sae",
    )
    p.add_argument("--no-resume", action="store_true", help="ignore checkpoints in --out")
    p.add_argument(
        "--eval-rows", type=positive_int, default=100_000, help="rows for the final eval"
    )
    add_config_args(p, SAEConfig)
    add_config_args(p, TrainConfig)


def _init_distributed(device: str) -> bool:
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    import torch.distributed as dist

    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return True


def _values(args: argparse.Namespace, cls) -> dict[str, Any]:
    return {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(cls)
        if f.name not in _NOT_FLAGS and hasattr(args, f.name)
    }


def _listed(v) -> list:
    return list(v) if isinstance(v, (list, tuple)) else [v]


def sae_configs_from_args(args: argparse.Namespace, store) -> list:
    """(hook, SAEConfig) for every combination of the grid flags; ``d`` and ``model_id``
    from the store (its manifest's ``run.model``)."""
    import itertools

    from hiddenlens.sae.config import SAEConfig

    base = _values(args, SAEConfig)
    model_id = ((store.manifest.get("run") or {}).get("model") or {}).get("model_id")
    sizes = [("d_sae", v) for v in _listed(base["d_sae"])] if base.get("d_sae") else [
        ("expansion", v) for v in _listed(args.expansion)
    ]  # fmt: skip
    out, seen = [], set()
    combos = itertools.product(
        _listed(args.hook), _listed(base["architecture"]), _listed(base["k"]), sizes
    )
    for hook, arch, k, (kind, size) in combos:
        d = store.d(hook)
        topk = registry.facts(arch)["topk_family"]
        kw = {**base, "architecture": arch, "k": (k or CLI_K) if topk else None}
        kw["d_sae"] = size if kind == "d_sae" else size * d
        if kw.get("output_hook"):  # a transcoder reconstructs another hook of the store
            kw["d_out"] = store.d(kw["output_hook"])
        cfg = SAEConfig(d_in=d, hook_point=hook, model_id=model_id, **kw)
        key = (hook, arch, cfg.k, cfg.d_sae)
        if key not in seen:
            seen.add(key)
            out.append((hook, cfg))
    return out


def _evaluate_and_write(sae, store, hook: str, out: Path, eval_rows: int) -> None:
    from hiddenlens import _io
    from hiddenlens._keys import metric_key
    from hiddenlens.sae import evaluate

    metrics = evaluate(sae.cpu(), store, hook, max_rows=eval_rows)
    _io.write_json(Path(out) / "metrics.json", metrics)
    sys.stdout.write(
        f"SAE saved to {out}: FVU {metrics[metric_key('sae', 'fvu', hook)]:.4f}, "
        f"L0 {metrics[metric_key('sae', 'l0', hook)]:.1f}\n"
    )


def train_from_args(args: argparse.Namespace) -> int:
    """Train, save to ``--out`` and write ``metrics.json`` beside each SAE; several hooks or
    grid values train every combination in one pass over the data (``train_many``)."""
    from hiddenlens.sae import TrainConfig, train
    from hiddenlens.sae.many import run_name, train_many
    from hiddenlens.store import ActivationStore

    tcfg = TrainConfig(**_values(args, TrainConfig))  # validated before the store is read
    store = ActivationStore.open(args.store)
    specs = sae_configs_from_args(args, store)
    dist = _init_distributed(args.device)
    try:
        resume = not args.no_resume
        if len(specs) == 1:
            (hook, cfg), out = specs[0], [Path(args.out)]
            saes = [train(store, hook, cfg, tcfg, out_dir=args.out, progress=True, resume=resume)]
        else:
            saes = train_many(store, [(h, c, tcfg) for h, c in specs], out_dir=args.out,
                              progress=True, resume=resume)  # fmt: skip
            out = [Path(args.out) / run_name(h, c) for h, c in specs]
        if not dist or int(os.environ.get("RANK", "0")) == 0:
            for sae, (hook, _), o in zip(saes, specs, out):
                _evaluate_and_write(sae, store, hook, o, args.eval_rows)
    finally:
        if dist:
            import torch.distributed as tdist

            tdist.destroy_process_group()
    return 0
