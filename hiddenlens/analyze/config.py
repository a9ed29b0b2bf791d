"""The run config of ``hiddenlens analyze``: one dataclass per TOML table, validated on build.

A run is ``[model]``, ``[data]``, ``[cache]`` and one optional table per analyzer section
(``[activations]``, ``[sae]``, ``[probe]``, ``[collapse]``, ``[info]``, ``[shortcut]``,
``[attribution]``, ``[lens]``, ``[structural]``, ``[codebook]``) plus ``[report]``. A section runs when its table is
present. Unknown tables or keys are errors that name the valid ones, so a typo never turns
a setting silently into its default.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hiddenlens.analyze._checks import _one_of, _pos_float, _pos_int, _str_list
from hiddenlens.analyze.section_config import (
    AttributionSectionConfig,
    CodebookSectionConfig,
    CollapseSectionConfig,
    InfoSectionConfig,
    LensSectionConfig,
    ProbeSectionConfig,
    SAESectionConfig,
    ShortcutSectionConfig,
    StructuralSectionConfig,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, as the tomli package
    import tomli as tomllib

SECTION_ORDER = (
    "activations", "sae", "probe", "collapse", "info", "shortcut", "attribution", "lens",
    "structural", "codebook",
)


@dataclass
class ModelConfig:
    """``[model]``: spec is "minilm", an HF directory, "tl:<dir or name>",
    "pkg.module:factory", or (from Python) an nn.Module / ModelHandle."""

    spec: Any
    device: str = "cpu"
    tokenizer: str | None = None  # a tokenizer directory for a model that lacks one
    seq_len: int | None = None  # truncate sequences to this many tokens
    batch_size: int = 32  # examples per forward pass while caching

    def __post_init__(self) -> None:
        if self.spec is None or (isinstance(self.spec, str) and not self.spec.strip()):
            raise ValueError("model.spec is required: 'minilm', a model directory, 'tl:...'")
        _pos_int("model.seq_len", self.seq_len, allow_none=True)
        _pos_int("model.batch_size", self.batch_size)
        if not isinstance(self.device, str):
            raise ValueError(f"model.device must be a string like 'cpu' or 'cuda', got {self.device!r}")


@dataclass
class DataConfig:
    """``[data]``: source is "demo", a .txt / .jsonl / .npy / .npz file, a saved HF dataset
    directory, or (from Python) a list of strings, a tensor or an array."""

    source: Any
    text_column: str = "text"
    labels: list[str] = field(default_factory=list)  # per-document columns (str or numeric)
    max_rows: int | None = None  # rows cached (tokens for text, examples otherwise)
    max_docs: int | None = None  # use only the first N documents / examples
    token_labels: bool = True  # text: derive per-token labels (is_digit, token_kind, ...)

    def __post_init__(self) -> None:
        if self.source is None or (isinstance(self.source, str) and not self.source.strip()):
            raise ValueError("data.source is required: 'demo', a file or a dataset directory")
        self.labels = _str_list("data.labels", self.labels, allow_none=False)
        _pos_int("data.max_rows", self.max_rows, allow_none=True)
        _pos_int("data.max_docs", self.max_docs, allow_none=True)


@dataclass
class CacheConfig:
    """``[cache]``: the hook points (names or globs) whose activations are stored."""

    hooks: list[str]
    dtype: str = "float32"
    rows: str | None = None  # "position": one row per spatial position of a conv map
    shard_size_mb: float = 128.0

    def __post_init__(self) -> None:
        self.hooks = _str_list("cache.hooks", self.hooks, allow_none=False)
        if not self.hooks:
            raise ValueError("cache.hooks must name at least one hook point (names or globs)")
        _one_of("cache.dtype", self.dtype, ("float32", "float16", "bfloat16"))
        _one_of("cache.rows", self.rows, (None, "example", "position", "token"))
        _pos_float("cache.shard_size_mb", self.shard_size_mb)


@dataclass
class ActivationsConfig:
    """``[activations]``: norms and the share of positive units per cached hook; ``hooks``
    adds hook points captured live on the first ``docs`` documents (e.g. MLP outputs for
    the Lazy-Neuron measurement) without storing them."""

    hooks: list[str] | None = None
    docs: int = 128

    def __post_init__(self) -> None:
        self.hooks = _str_list("activations.hooks", self.hooks)
        _pos_int("activations.docs", self.docs)


@dataclass
class ReportConfig:
    """``[report]``: the page title and the metrics lifted into its summary."""

    title: str | None = None
    headline: list[str] = field(default_factory=list)  # metric keys or key prefixes

    def __post_init__(self) -> None:
        self.headline = _str_list("report.headline", self.headline, allow_none=False)


SECTION_CLASSES = {
    "activations": ActivationsConfig,
    "sae": SAESectionConfig,
    "probe": ProbeSectionConfig,
    "collapse": CollapseSectionConfig,
    "info": InfoSectionConfig,
    "shortcut": ShortcutSectionConfig,
    "attribution": AttributionSectionConfig,
    "lens": LensSectionConfig,
    "structural": StructuralSectionConfig,
    "codebook": CodebookSectionConfig,
}
_TABLES = {"model": ModelConfig, "data": DataConfig, "cache": CacheConfig, "report": ReportConfig}


def _build(cls, raw: Any, where: str):
    if not isinstance(raw, dict):
        raise ValueError(f"[{where}] must be a table of settings, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ValueError(
            f"unknown key(s) {', '.join(map(repr, unknown))} in [{where}]; valid keys: "
            f"{', '.join(fields)}"
        )
    required = [
        n
        for n, f in fields.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [n for n in required if n not in raw]
    if missing:
        raise ValueError(f"[{where}] needs {', '.join(map(repr, missing))}")
    return cls(**raw)


@dataclass
class RunConfig:
    """A whole run; build it with :func:`load_config` (a TOML path or a dict)."""

    model: ModelConfig
    data: DataConfig
    cache: CacheConfig
    sections: dict[str, Any] = field(default_factory=dict)  # name -> section config
    report: ReportConfig = field(default_factory=ReportConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        bad = sorted(set(self.sections) - set(SECTION_CLASSES))
        if bad:
            raise ValueError(f"unknown section(s) {bad}; valid: {', '.join(SECTION_CLASSES)}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"seed must be an int, got {self.seed!r}")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        if not isinstance(raw, dict):
            raise TypeError(f"a run config is a dict or a TOML path, got {type(raw).__name__}")
        valid = ["seed", *_TABLES, *SECTION_CLASSES]
        unknown = sorted(set(raw) - set(valid))
        if unknown:
            raise ValueError(
                f"unknown table(s) {', '.join(map(repr, unknown))}; valid: {', '.join(valid)}"
            )
        for name in ("model", "data", "cache"):
            if name not in raw:
                raise ValueError(f"the run config needs a [{name}] table")
        tables = {n: _build(c, raw[n], n) for n, c in _TABLES.items() if n in raw}
        sections = {
            n: _build(SECTION_CLASSES[n], raw[n], n) for n in SECTION_ORDER if n in raw
        }
        return cls(sections=sections, seed=raw.get("seed", 0), **tables)

    def section(self, name: str) -> Any:
        return self.sections.get(name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (objects given from Python are shown by their type)."""
        out: dict[str, Any] = {"seed": self.seed}
        for name in ("model", "data", "cache", "report"):
            out[name] = _jsonable(dataclasses.asdict(getattr(self, name)))
        for name, sec in self.sections.items():
            out[name] = _jsonable(dataclasses.asdict(sec))
        return out


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    simple = (str, int, float, bool, type(None))

    def conv(v):
        if isinstance(v, simple):
            return v
        if isinstance(v, (list, tuple)) and all(isinstance(x, simple) for x in v):
            return list(v)
        return f"<{type(v).__name__}>"

    return {k: conv(v) for k, v in d.items()}


def read_toml(path: str | Path) -> dict[str, Any]:
    """The tables of a TOML file; a syntax error names the file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"run config {str(path)!r} does not exist (a .toml file)")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path} is not valid TOML: {err}") from err


def load_config(config: str | Path | dict | RunConfig) -> RunConfig:
    """A :class:`RunConfig` from a TOML file path, a dict of tables, or a RunConfig."""
    if isinstance(config, RunConfig):
        return config
    if isinstance(config, dict):
        return RunConfig.from_dict(config)
    if isinstance(config, (str, Path)):
        return RunConfig.from_dict(read_toml(config))
    raise TypeError(f"config must be a TOML path, a dict or a RunConfig, got {type(config).__name__}")
