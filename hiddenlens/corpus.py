"""The bundled demo corpus and per-token properties read off the original text.

(Reading the user's text files, JSONL and datasets is :mod:`hiddenlens.data`'s job.)

The demo corpus is real English prose that no one on this project wrote: the Python
language reference and library documentation that ship with CPython (``pydoc_data``) and
the docstrings of a fixed list of standard-library modules. It is cut into paragraphs of
prose (code listings and tables dropped), in a fixed order, so every machine gets the same
documents; together they hold well over 100k MiniLM tokens.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

_DOCSTRING_MODULES = (
    "argparse",
    "asyncio",
    "collections",
    "contextlib",
    "csv",
    "dataclasses",
    "datetime",
    "decimal",
    "email",
    "fractions",
    "functools",
    "heapq",
    "http.client",
    "inspect",
    "io",
    "itertools",
    "json",
    "logging",
    "os",
    "pathlib",
    "pickle",
    "random",
    "re",
    "shutil",
    "socket",
    "sqlite3",
    "statistics",
    "string",
    "subprocess",
    "tarfile",
    "tempfile",
    "textwrap",
    "threading",
    "typing",
    "unittest",
    "urllib.parse",
    "uuid",
    "zipfile",
    "ast",
    "calendar",
    "cmd",
    "codecs",
    "configparser",
    "copy",
    "difflib",
    "enum",
    "ftplib",
    "gettext",
    "gzip",
    "hashlib",
    "imaplib",
    "ipaddress",
    "locale",
    "mailbox",
    "multiprocessing",
    "numbers",
    "optparse",
    "pdb",
    "pprint",
    "pydoc",
    "queue",
    "sched",
    "selectors",
    "smtplib",
    "ssl",
    "struct",
    "traceback",
    "types",
    "warnings",
    "wave",
    "weakref",
    "xml.dom.minidom",
    "xml.etree.ElementTree",
    "zipimport",
    "zoneinfo",
    "asyncio.events",
    "asyncio.tasks",
    "asyncio.streams",
    "logging.handlers",
    "unittest.case",
    "unittest.mock",
    "email.message",
    "multiprocessing.pool",
    "concurrent.futures._base",
    "http.cookiejar",
    "http.server",
    "urllib.request",
    "shlex",
    "fileinput",
    "glob",
    "importlib.metadata",
    "json.decoder",
    "sqlite3.dbapi2",
)


def _is_prose(paragraph: str) -> bool:
    lines = paragraph.splitlines()
    code_like = sum(1 for ln in lines if ln.startswith(("   ", ">>>", "...", "+", "|", "=")))
    words = paragraph.split()
    letters = sum(ch.isalpha() for ch in paragraph)
    return len(words) >= 8 and code_like <= len(lines) // 3 and letters >= 0.6 * len(paragraph)


def _paragraphs(text: str) -> list[str]:
    out = []
    for block in re.split(r"\n\s*\n", text):
        if _is_prose(block):
            out.append(" ".join(block.split()))
    return out


def _docstrings(module_name: str) -> list[str]:
    """Prose paragraphs of a stdlib module's docstrings, read from its source file.

    Parsing the source (not the live module) keeps the corpus independent of what else is
    imported: libraries monkeypatch the standard library (transformers adds methods to
    ``logging.Logger``), which would otherwise change the corpus, and with it the data
    fingerprint a resumed cache run is checked against.
    """
    spec = importlib.util.find_spec(module_name)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return []
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    docs = [ast.get_docstring(tree) or ""]
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.name.startswith("_"):
                continue
            docs.append(ast.get_docstring(node) or "")
            if isinstance(node, ast.ClassDef):
                docs.extend(
                    ast.get_docstring(m) or ""
                    for m in node.body
                    if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))
                    and not m.name.startswith("_")
                )
    return [p for d in docs for p in _paragraphs(d)]


def demo_corpus(max_docs: int | None = None) -> list[str]:
    """The bundled English corpus: a list of prose paragraphs, in a fixed order."""
    from pydoc_data.topics import topics

    docs = [p for key in sorted(topics) for p in _paragraphs(topics[key])]
    for module_name in _DOCSTRING_MODULES:
        docs.extend(_docstrings(module_name))
    docs = list(dict.fromkeys(docs))  # de-duplicate, keep order
    return docs[:max_docs] if max_docs else docs


def token_properties(
    tokenizer, texts: list[str], sample_idx, position, *, seq_len: int | None = None
) -> dict:
    """Per-row token properties read off the original text (works for uncased tokenizers).

    Rows are identified by ``sample_idx`` and ``position`` as in a store's metadata. Returns
    boolean arrays ``is_digit``, ``is_capitalised``, ``is_punct``, ``is_continuation`` (a
    word piece that continues a word) and ``is_word_start``, plus ``position``.
    """
    import numpy as np

    sample_idx = np.asarray(sample_idx)
    position = np.asarray(position)
    n = len(sample_idx)
    props = {
        k: np.zeros(n, dtype=bool)
        for k in ("is_digit", "is_capitalised", "is_punct", "is_continuation", "is_word_start")
    }
    order = np.argsort(sample_idx, kind="stable")
    bounds = np.searchsorted(sample_idx[order], np.unique(sample_idx), side="left")
    groups = np.split(order, bounds[1:])
    for rows in groups:
        s = int(sample_idx[rows[0]])
        text = texts[s]
        enc = tokenizer(
            text, return_offsets_mapping=True, truncation=seq_len is not None, max_length=seq_len
        )
        offsets = enc["offset_mapping"]
        for r in rows:
            start, end = offsets[int(position[r])]
            piece = text[start:end]
            if not piece:
                continue
            props["is_digit"][r] = piece.isdigit()
            props["is_capitalised"][r] = piece[0].isupper()
            props["is_punct"][r] = all(not ch.isalnum() and not ch.isspace() for ch in piece)
            continues = start > 0 and text[start - 1].isalnum() and piece[0].isalnum()
            props["is_continuation"][r] = continues
            props["is_word_start"][r] = piece[0].isalnum() and not continues
    props["position"] = position.astype(np.int64)
    return props
