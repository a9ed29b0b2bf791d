"""Validators the analyze config dataclasses share: each names the setting and what is
accepted."""

from __future__ import annotations

import math
from typing import Any


def _pos_int(where: str, value: Any, *, allow_none: bool = False, zero: bool = False) -> None:
    if value is None and allow_none:
        return
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= (0 if zero else 1)
    if not ok:
        need = "a non-negative int" if zero else "a positive int"
        raise ValueError(f"{where} must be {need}{' or absent' if allow_none else ''}, got {value!r}")


def _pos_float(where: str, value: Any) -> None:
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0
            or not math.isfinite(value)):  # fmt: skip
        raise ValueError(f"{where} must be a positive finite number, got {value!r}")


def _str_list(where: str, value: Any, *, allow_none: bool = True) -> list[str] | None:
    """A string or a list of strings, as a list (None stays None when allowed)."""
    if value is None and allow_none:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{where} must be a string or a list of non-empty strings, got {value!r}")
    return list(value)


def _one_of(where: str, value: Any, accepted: tuple) -> None:
    if value not in accepted:
        raise ValueError(f"{where} = {value!r}; accepted: {', '.join(map(repr, accepted))}")
