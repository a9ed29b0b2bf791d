"""A small, escaping subset of Markdown for report text: what section texts are written in.

Paragraphs (blank lines), bullet lists (``- ``), inline ``code``, **bold**, *italic* and
``[links](target)``. Everything is HTML-escaped first — text may come from datasets, model
tokens or a ``report.json`` someone sent — so no input can produce markup beyond these
elements. A link target must be a relative path inside the run directory (no scheme, no
``..``, no leading ``/``), an in-page ``#anchor`` or an ``http(s)://`` address; anything
else is shown as plain text.
"""

from __future__ import annotations

import html
import re

_CODE = re.compile(r"`([^`\n]+)`")
_LINK = re.compile(r"\[([^\]\n]+)\]\(([^)\s]+)\)")
_BOLD = re.compile(r"\*\*([^*\n]+)\*\*")
_ITALIC = re.compile(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])")
_SAFE_TARGET = re.compile(r"(#[\w.~-]+|https?://[\w.:/?#=&%~+-]+|[\w.~-]+(/[\w.~-]+)*(#[\w.~-]+)?)")


def safe_href(target: str) -> bool:
    """True for ``#anchor``, ``http(s)://...`` and relative paths that stay in the run."""
    if not _SAFE_TARGET.fullmatch(target):
        return False
    return target.startswith(("#", "http")) or ".." not in target.split("/")


def _inline_plain(text: str) -> str:
    """Escape, then bold / italic / links (code spans are handled by the caller)."""
    out, last = [], 0
    for m in _LINK.finditer(text):
        out.append(_emphasis(html.escape(text[last : m.start()])))
        label, target = m.group(1), m.group(2)
        if safe_href(target):
            out.append(f"<a href='{html.escape(target)}'>{_emphasis(html.escape(label))}</a>")
        else:
            out.append(html.escape(m.group(0)))
        last = m.end()
    out.append(_emphasis(html.escape(text[last:])))
    return "".join(out)


def _emphasis(escaped: str) -> str:
    escaped = _BOLD.sub(r"<strong>\1</strong>", escaped)
    return _ITALIC.sub(r"<em>\1</em>", escaped)


def inline(text: str) -> str:
    """One line of markdown-lite as escaped HTML."""
    out, last = [], 0
    for m in _CODE.finditer(text):
        out.append(_inline_plain(text[last : m.start()]))
        out.append(f"<code>{html.escape(m.group(1))}</code>")
        last = m.end()
    out.append(_inline_plain(text[last:]))
    return "".join(out)


def markdown(text: str) -> str:
    """Paragraphs and ``- `` bullet lists of :func:`inline` text."""
    parts = []
    for para in str(text).strip().split("\n\n"):
        lines = para.splitlines()
        if lines and all(ln.lstrip().startswith("- ") for ln in lines):
            items = "".join(f"<li>{inline(ln.lstrip()[2:])}</li>" for ln in lines)
            parts.append(f"<ul>{items}</ul>")
        elif para.strip():
            parts.append(f"<p>{inline(para)}</p>")
    return "".join(parts)
