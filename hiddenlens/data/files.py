"""Read the user's data from disk: ``"demo"``, ``.txt``, ``.jsonl`` and saved HF datasets.

A ``.txt`` file holds one document per blank-line-separated paragraph (whitespace
collapsed); a ``.jsonl`` file one JSON object per line, whose fields are the columns
(``text_column`` and any label columns); a directory is a dataset saved with
``datasets.Dataset.save_to_disk``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

ACCEPTED_PATHS = (
    "'demo', a .txt file, a .jsonl file or a dataset directory saved with datasets.save_to_disk"
)


def resolve_path(source: str | Path) -> Path:
    """``source`` as an existing path; a FileNotFoundError naming what is accepted otherwise."""
    path = Path(source).expanduser()
    if not path.exists():
        hint = " (to use one text, pass a list: [text])" if " " in str(source) else ""
        raise FileNotFoundError(
            f"data source {str(source)!r} does not exist; accepted: {ACCEPTED_PATHS}{hint}"
        )
    return path


def read_txt(path: Path) -> list[str]:
    """The paragraphs of a text file, whitespace collapsed."""
    raw = path.read_text(encoding="utf-8")
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", raw) if p.strip()]


def read_jsonl(path: Path, text_column: str) -> tuple[list[str], dict[str, Callable[[], list]]]:
    """(texts, {column: loader of its values}) from a JSONL file."""
    records, linenos = [], []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno} is not valid JSON: {err.msg}") from err
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{lineno} is not a JSON object")
            records.append(record)
            linenos.append(lineno)

    def column(name: str) -> list:
        for record, lineno in zip(records, linenos):
            if name not in record:
                raise ValueError(
                    f"{path}:{lineno} has no field {name!r}; its fields: {sorted(record)}"
                )
        return [r[name] for r in records]

    names = sorted({k for r in records for k in r})
    if records and text_column not in names:
        raise ValueError(f"{path} has no field {text_column!r}; fields: {names}")
    texts = column(text_column) if records else []
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise TypeError(
            f"{path}:{linenos[bad]} field {text_column!r} is {texts[bad]!r}, not a string"
        )
    return texts, {n: (lambda n=n: column(n)) for n in names}


def load_saved_dataset(path: Path) -> Any:
    """A ``datasets.Dataset`` saved to ``path`` (a DatasetDict asks for a split)."""
    from datasets import load_from_disk

    try:
        ds = load_from_disk(str(path))
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"directory {path} is not a saved Hugging Face dataset ({err}); accepted: "
            f"{ACCEPTED_PATHS}"
        ) from err
    return ds
