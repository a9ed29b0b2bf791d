"""Hook-point names: list them, expand globs, resolve a name to a module and a tensor slot.

A hook point is a module path from ``named_modules()`` (``encoder.layer.3``), or for a
TransformerLens ``HookedTransformer`` one of its own hook names
(``blocks.0.hook_resid_post``, which are modules too). A suffix picks the tensor:
``:output`` (default) or ``:input``, optionally with an index into a tuple
(``:output.1``, ``:input.0``). Without an index, a tuple or ``ModelOutput`` means its first
tensor. Globs (``encoder.layer.*``) expand in natural order.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from torch import nn

_SLOTS = ("output", "input")


@dataclass(frozen=True)
class HookSpec:
    """A parsed hook-point name: the module path, which side of it, and a tuple index."""

    name: str
    module_path: str
    slot: str = "output"
    index: int | None = None


def unwrap_model(model) -> nn.Module:
    """Return the ``nn.Module`` behind a ``ModelHandle`` (or the module itself)."""
    inner = getattr(model, "model", None)
    if isinstance(inner, nn.Module) and not isinstance(model, nn.Module):
        return inner
    if isinstance(model, nn.Module):
        return model
    raise TypeError(
        f"expected an nn.Module or a hiddenlens ModelHandle, got {type(model).__name__}"
    )


def _is_transformer_lens(module: nn.Module) -> bool:
    return hasattr(module, "hook_dict") and type(module).__module__.startswith("transformer_lens")


def hook_points(model) -> list[str]:
    """All valid hook-point names of ``model`` (a ModelHandle or any ``nn.Module``).

    TransformerLens models list their HookPoint names; other models list every named
    submodule path (the root module has no name and is left out).
    """
    module = unwrap_model(model)
    if _is_transformer_lens(module):
        return list(module.hook_dict.keys())
    return [name for name, _ in module.named_modules() if name]


def _glob_regex(pattern: str) -> re.Pattern:
    """Glob where ``*`` and ``?`` stay within one path component and ``**`` crosses dots."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if ch == "[" and "]" in pattern[i + 1 :]:
            end = pattern.index("]", i + 1)
            out.append("[" + pattern[i + 1 : end].replace("!", "^", 1) + "]")
            i = end + 1
            continue
        out.append({"*": "[^.]*", "?": "[^.]"}.get(ch, re.escape(ch)))
        i += 1
    return re.compile("".join(out) + r"\Z")


def _natural_key(name: str) -> list:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def parse_hook_spec(name: str) -> HookSpec:
    """Split ``path[:slot[.index]]`` into its parts, validating the suffix."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"a hook point is a non-empty string, got {name!r}")
    path, _, suffix = name.partition(":")
    if not suffix:
        return HookSpec(name, path)
    slot, _, idx = suffix.partition(".")
    if slot not in _SLOTS or (idx and not idx.isdigit()):
        raise ValueError(
            f"bad hook-point suffix {':' + suffix!r} in {name!r}; accepted: ':output', ':input', "
            "':output.N', ':input.N'"
        )
    return HookSpec(name, path, slot, int(idx) if idx else None)


def closest_names(name: str, valid: list[str], n: int = 5) -> list[str]:
    """The valid names most similar to ``name`` (for error messages)."""
    return difflib.get_close_matches(name, valid, n=n, cutoff=0.3) or valid[:n]


def resolve_hook_points(model, patterns: str | list[str]) -> list[str]:
    """Expand globs and validate names; unknown names raise listing the closest valid ones.

    Returns the concrete names, de-duplicated, globs expanded in natural order.
    """
    if isinstance(patterns, str):
        patterns = [patterns]
    patterns = list(patterns)
    if not patterns:
        raise ValueError("no hook points given; pass at least one name or glob")
    valid = hook_points(model)
    valid_set = set(valid)
    out: list[str] = []
    for pattern in patterns:
        spec = parse_hook_spec(pattern)
        suffix = pattern[len(spec.module_path) :]
        if any(ch in spec.module_path for ch in "*?["):
            regex = _glob_regex(spec.module_path)
            matches = sorted((v for v in valid if regex.match(v)), key=_natural_key)
            if not matches:
                raise ValueError(
                    f"hook-point glob {pattern!r} matches nothing; closest valid names: "
                    f"{closest_names(spec.module_path, valid)}"
                )
            out.extend(m + suffix for m in matches)
        elif spec.module_path in valid_set:
            out.append(pattern)
        else:
            raise ValueError(
                f"unknown hook point {spec.module_path!r}; closest valid names: "
                f"{closest_names(spec.module_path, valid)} "
                f"(hiddenlens.hook_points(model) lists all {len(valid)})"
            )
    return list(dict.fromkeys(out))


def get_module(model, module_path: str) -> nn.Module:
    """The submodule at ``module_path`` (validated by :func:`resolve_hook_points` first)."""
    module = unwrap_model(model)
    try:
        return module.get_submodule(module_path)
    except AttributeError:
        resolve_hook_points(module, module_path)  # raises with the closest names
        raise
