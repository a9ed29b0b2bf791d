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
    p.add_argument("--hook", required=True, help="hook point cached in the store")
    p.add_argument("--out", type=Path, required=True, help="output directory (SAELens format)")
    p.add_argument(
        "--expansion", type=positive_int, default=8, help="d_sae = expansion * d without --d-sae"
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


def sae_config_from_args(args: argparse.Namespace, store):
    """The SAEConfig of parsed flags and the store (``d``; ``model_id`` from the manifest)."""
    from hiddenlens.sae.config import SAEConfig

    d = store.d(args.hook)
    sae_kw = _values(args, SAEConfig)
    if sae_kw.get("k") is None and registry.facts(sae_kw["architecture"])["topk_family"]:
        sae_kw["k"] = CLI_K
    sae_kw["d_sae"] = sae_kw.get("d_sae") or args.expansion * d
    if sae_kw.get("output_hook"):  # a transcoder reconstructs another hook of the store
        sae_kw["d_out"] = store.d(sae_kw["output_hook"])
    run = store.manifest.get("run") or {}
    model_id = (run.get("model") or {}).get("model_id")
    return SAEConfig(d_in=d, hook_point=args.hook, model_id=model_id, **sae_kw)


def train_from_args(args: argparse.Namespace) -> int:
    """Train, save to ``--out`` and write ``--out/metrics.json``; returns an exit code."""
    from hiddenlens import _io
    from hiddenlens._keys import metric_key
    from hiddenlens.sae import TrainConfig, evaluate, train
    from hiddenlens.store import ActivationStore

    tcfg = TrainConfig(**_values(args, TrainConfig))  # validated before the store is read
    store = ActivationStore.open(args.store)
    cfg = sae_config_from_args(args, store)
    dist = _init_distributed(args.device)
    try:
        sae = train(
            store, args.hook, cfg, tcfg, out_dir=args.out, progress=True, resume=not args.no_resume
        )
        if not dist or int(os.environ.get("RANK", "0")) == 0:
            metrics = evaluate(sae.cpu(), store, args.hook, max_rows=args.eval_rows)
            _io.write_json(Path(args.out) / "metrics.json", metrics)
            sys.stdout.write(
                f"SAE saved to {args.out}: FVU {metrics[metric_key('sae', 'fvu', args.hook)]:.4f}, "
                f"L0 {metrics[metric_key('sae', 'l0', args.hook)]:.1f}\n"
            )
    finally:
        if dist:
            import torch.distributed as tdist

            tdist.destroy_process_group()
    return 0
