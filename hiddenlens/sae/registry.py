"""The one registry of SAE architectures: name -> class, each class carrying its own facts.

A leaf module (it imports nothing of ``hiddenlens.sae``), as SAELens's
``sae_lens/registry.py``. An architecture class (a ``BaseSAE`` subclass) states:

* ``architecture``: its hiddenlens name (set by :func:`register_architecture`);
* ``saelens_architecture``: the ``architecture`` written to SAELens's ``cfg.json``;
* ``inference_architecture``: the hiddenlens architecture the saved SAE loads back as
  (BatchTopK exports as a JumpReLU with one shared threshold);
  ``None`` means itself;
* ``topk_family``: it needs ``k`` (active latents per row);
* ``store_hooks``: suffixes of the store hooks training reads, ``""`` for the hook
  itself (g-SAE also reads ``"#grad"``, the downstream gradient).

The built-in architectures are listed here by module, imported on first use, so the
names are known (e.g. to the ``train-sae`` parser) without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Built-in architectures: name -> module that registers it when imported.
_BUILTIN = {
    "relu": "hiddenlens.sae.architectures.relu",
    "topk": "hiddenlens.sae.architectures.topk",
    "batchtopk": "hiddenlens.sae.architectures.batchtopk",
    "jumprelu": "hiddenlens.sae.architectures.jumprelu",
    "gated": "hiddenlens.sae.architectures.gated",
    "gradient_topk": "hiddenlens.sae.architectures.gradient_topk",
    "matryoshka_batchtopk": "hiddenlens.sae.architectures.matryoshka",
    "transcoder": "hiddenlens.sae.architectures.transcoder",
    "skip_transcoder": "hiddenlens.sae.architectures.transcoder",
    "topk_transcoder": "hiddenlens.sae.architectures.transcoder",
    "topk_skip_transcoder": "hiddenlens.sae.architectures.transcoder",
}
_CLASSES: dict[str, type] = {}
_FACTS = ("saelens_architecture", "topk_family", "store_hooks")


def register_architecture(name: str):
    """Class decorator: register an SAE class (a ``BaseSAE`` subclass) under ``name``.

    The class must define ``encode`` and ``forward`` and the facts ``saelens_architecture``
    (str), ``topk_family`` (bool) and ``store_hooks`` (tuple of suffixes, ``""`` first).
    Registering a second class under a taken name is an error unless it is the same class.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"architecture name must be an identifier string, got {name!r}")

    def deco(cls: type) -> type:
        _check_facts(name, cls)
        old = _CLASSES.get(name)
        if old is not None and old.__qualname__ != cls.__qualname__:
            raise ValueError(f"architecture {name!r} is already registered to {old.__name__}")
        cls.architecture = name
        _CLASSES[name] = cls
        return cls

    return deco


def _check_facts(name: str, cls: type) -> None:
    missing = [f for f in _FACTS if not hasattr(cls, f)]
    if missing:
        raise TypeError(f"architecture {name!r}: class {cls.__name__} lacks {missing}")
    if not isinstance(cls.saelens_architecture, str) or not cls.saelens_architecture:
        raise TypeError(f"architecture {name!r}: saelens_architecture must be a non-empty str")
    if not isinstance(cls.topk_family, bool):
        raise TypeError(f"architecture {name!r}: topk_family must be a bool")
    hooks = cls.store_hooks
    if not (
        isinstance(hooks, tuple)
        and hooks
        and hooks[0] == ""
        and all(isinstance(h, str) for h in hooks)
    ):
        raise TypeError(
            f"architecture {name!r}: store_hooks must be a tuple of str starting with '', "
            f"got {hooks!r}"
        )


def names() -> list[str]:
    """Every architecture name: the built-ins, then user-registered ones (no torch import)."""
    return list(_BUILTIN) + [n for n in _CLASSES if n not in _BUILTIN]


def get(name: str) -> type:
    """The class registered under ``name`` (importing a built-in on first use)."""
    if name not in _CLASSES and name in _BUILTIN:
        importlib.import_module(_BUILTIN[name])
    if name not in _CLASSES:
        raise ValueError(f"unknown architecture {name!r}; known: {names()}")
    return _CLASSES[name]


def facts(name: str) -> dict[str, Any]:
    """The facts of architecture ``name`` as a dict (see the module docstring)."""
    cls = get(name)
    return {
        "architecture": name,
        "saelens_architecture": cls.saelens_architecture,
        "inference_architecture": getattr(cls, "inference_architecture", None) or name,
        "topk_family": cls.topk_family,
        "store_hooks": tuple(cls.store_hooks),
    }


def store_hooks(name: str, hook: str) -> list[str]:
    """The store hooks training architecture ``name`` on ``hook`` reads, ``hook`` first."""
    return [hook + suffix for suffix in get(name).store_hooks]


def from_saelens(saelens_architecture: str) -> str | None:
    """The hiddenlens architecture that loads a SAELens ``architecture`` (None: unsupported).

    It is the first registered architecture exporting under that name that loads back as
    itself (so SAELens "topk" loads as "topk", not "gradient_topk").
    """
    for name in names():
        f = facts(name)
        if (
            f["saelens_architecture"] == saelens_architecture
            and f["inference_architecture"] == name
        ):
            return name
    return None


def saelens_names() -> list[str]:
    """SAELens architecture names that load into a hiddenlens architecture."""
    return sorted({s for n in names() if from_saelens(s := facts(n)["saelens_architecture"])})
