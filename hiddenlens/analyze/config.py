"""The run config of ``hiddenlens analyze``: one dataclass per TOML table, validated on build.

A run is ``[model]``, ``[data]``, ``[cache]`` and one optional table per analyzer section
(``[activations]``, ``[sae]``, ``[probe]``, ``[collapse]``, ``[info]``, ``[shortcut]``,
``[attribution]``, ``[lens]``, ``[codebook]``) plus ``[report]``. A section runs when its table is
present. Unknown tables or keys are errors that name the valid ones, so a typo never turns
a setting silently into its default.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, as the tomli package
    import tomli as tomllib

SECTION_ORDER = (
    "activations", "sae", "probe", "collapse", "info", "shortcut", "attribution", "lens",
    "codebook",
)


def _pos_int(where: str, value: Any, *, allow_none: bool = False, zero: bool = False) -> None:
    if value is None and allow_none:
        return
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= (0 if zero else 1)
    if not ok:
        need = "a non-negative int" if zero else "a positive int"
        raise ValueError(f"{where} must be {need}{' or absent' if allow_none else ''}, got {value!r}")


def _pos_float(where: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{where} must be a positive number, got {value!r}")


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
class SAESectionConfig:
    """``[sae]``: one SAE per hook (trained on the store), evaluated and spliced back."""

    hooks: list[str]
    architecture: str = "topk"
    k: int | None = 16
    expansion: int = 4  # d_sae = expansion * d_in unless d_sae is given
    d_sae: int | None = None
    total_tokens: int = 200_000
    batch_size: int = 2048
    lr: float = 2e-3
    l1_coefficient: float = 5.0
    eval_rows: int = 10_000
    eval_docs: int = 32  # documents for the spliced evaluation (CE loss / embedding cosine)
    top_latents: int = 4  # latents shown with their top-activating contexts
    dashboard: bool = True
    checkpoint_every: int = 50

    def __post_init__(self) -> None:
        from hiddenlens.sae import registry

        self.hooks = _str_list("sae.hooks", self.hooks, allow_none=False)
        if not self.hooks:
            raise ValueError("sae.hooks must name at least one cached hook point")
        _one_of("sae.architecture", self.architecture, tuple(registry.names()))
        _pos_int("sae.k", self.k, allow_none=True)
        for name in ("expansion", "total_tokens", "batch_size", "eval_rows", "eval_docs"):
            _pos_int(f"sae.{name}", getattr(self, name))
        _pos_int("sae.d_sae", self.d_sae, allow_none=True)
        _pos_int("sae.top_latents", self.top_latents, zero=True)
        _pos_int("sae.checkpoint_every", self.checkpoint_every, zero=True)
        _pos_float("sae.lr", self.lr)


@dataclass
class ProbeSectionConfig:
    """``[probe]``: linear probes per layer with control tasks (text), MDL and CKA."""

    labels: list[str] = field(default_factory=list)  # empty: every available label
    hooks: list[str] | None = None  # default: every cached hook
    rows: int = 4_000
    mdl_rows: int = 2_000
    cka_rows: int = 2_000
    cv: int = 3
    n_boot: int = 200
    max_iter: int = 200

    def __post_init__(self) -> None:
        self.labels = _str_list("probe.labels", self.labels, allow_none=False)
        self.hooks = _str_list("probe.hooks", self.hooks)
        for name in ("rows", "mdl_rows", "cka_rows", "n_boot", "max_iter"):
            _pos_int(f"probe.{name}", getattr(self, name))
        if not isinstance(self.cv, int) or self.cv < 2:
            raise ValueError(f"probe.cv must be an int >= 2, got {self.cv!r}")


@dataclass
class CollapseSectionConfig:
    """``[collapse]``: NC1-NC4 / CDNV per layer for each label, plus a UFM reference run."""

    labels: list[str] = field(default_factory=list)
    hooks: list[str] | None = None
    max_rows: int | None = None
    ufm_steps: int = 2000  # 0: no unconstrained-features reference

    def __post_init__(self) -> None:
        self.labels = _str_list("collapse.labels", self.labels, allow_none=False)
        self.hooks = _str_list("collapse.hooks", self.hooks)
        _pos_int("collapse.max_rows", self.max_rows, allow_none=True)
        _pos_int("collapse.ufm_steps", self.ufm_steps, zero=True)


@dataclass
class InfoSectionConfig:
    """``[info]``: I(T;Y) by lossy compression + k-NN, I(X;T) by binning and KDE bounds."""

    labels: list[str] = field(default_factory=list)
    hooks: list[str] | None = None
    rows: int = 4_000
    ixt_rows: int = 1_024
    noise_std: float = 0.1
    n_components: int = 4
    k: int = 5

    def __post_init__(self) -> None:
        self.labels = _str_list("info.labels", self.labels, allow_none=False)
        self.hooks = _str_list("info.hooks", self.hooks)
        for name in ("rows", "ixt_rows", "n_components", "k"):
            _pos_int(f"info.{name}", getattr(self, name))
        _pos_float("info.noise_std", self.noise_std)


@dataclass
class ShortcutSectionConfig:
    """``[shortcut]``: Feature-Sieve decodability profile per label; optionally the
    controlled two-feature run of Hermann et al. (synthetic, independent of the model)."""

    labels: list[str] = field(default_factory=list)
    hooks: list[str] | None = None
    rows: int = 2_500
    synthetic: bool = True
    steps: int = 300
    seeds: int = 2

    def __post_init__(self) -> None:
        self.labels = _str_list("shortcut.labels", self.labels, allow_none=False)
        self.hooks = _str_list("shortcut.hooks", self.hooks)
        for name in ("rows", "steps", "seeds"):
            _pos_int(f"shortcut.{name}", getattr(self, name))


@dataclass
class AttributionSectionConfig:
    """``[attribution]``: input IG, per-layer gradient x activation and layer IG, patching
    and SAE-latent attribution, with a target chosen for the model kind."""

    hooks: list[str] | None = None
    examples: int = 4
    n_steps: int = 32
    seq_len: int = 32
    reference: str = "How do I debug a Python program?"  # encoders: similarity target
    pair: list[str] = field(
        default_factory=lambda: ["The cat sat on the warm mat.", "The dog sat on the warm mat."]
    )

    def __post_init__(self) -> None:
        self.hooks = _str_list("attribution.hooks", self.hooks)
        for name in ("examples", "n_steps", "seq_len"):
            _pos_int(f"attribution.{name}", getattr(self, name))
        self.pair = _str_list("attribution.pair", self.pair, allow_none=False)
        if len(self.pair) != 2:
            raise ValueError(f"attribution.pair must be two texts (clean, corrupt), got {self.pair!r}")


@dataclass
class LensSectionConfig:
    """``[lens]``: logit lens vs tuned lens (Belrose et al. 2023) on the cached layers, for a
    model with an unembedding: translators trained on ``rows`` rows of 80% of the documents,
    per-layer KL to the final distribution and perplexity on ``eval_rows`` of the rest."""

    hooks: list[str] | None = None  # layers to decode (default: every cached hook of width d_model)
    final_hook: str | None = None  # the last residual, decoded = the output (default: last hook)
    rows: int = 20_000
    eval_rows: int = 5_000
    steps: int = 250
    batch_size: int = 512
    lr: float = 1.0

    def __post_init__(self) -> None:
        self.hooks = _str_list("lens.hooks", self.hooks)
        if self.final_hook is not None and not (isinstance(self.final_hook, str) and self.final_hook):
            raise ValueError(f"lens.final_hook must be a hook name or absent, got {self.final_hook!r}")
        for name in ("rows", "eval_rows", "steps", "batch_size"):
            _pos_int(f"lens.{name}", getattr(self, name))
        _pos_float("lens.lr", self.lr)


@dataclass
class CodebookSectionConfig:
    """``[codebook]``: a codebook bottleneck at one hook, k-means init, code-only finetune
    (distillation), code search for the labels against the best single neuron."""

    hook: str | None = None
    labels: list[str] = field(default_factory=list)
    n_codes: int = 512
    k: int = 8
    init_rows: int = 4_096
    steps: int = 300
    batch: int = 8
    seq_len: int = 64
    search_rows: int = 10_000
    max_seconds: float = 120.0
    eval_docs: int = 8

    def __post_init__(self) -> None:
        self.labels = _str_list("codebook.labels", self.labels, allow_none=False)
        for name in ("n_codes", "k", "init_rows", "steps", "batch", "seq_len", "search_rows", "eval_docs"):
            _pos_int(f"codebook.{name}", getattr(self, name))
        _pos_float("codebook.max_seconds", self.max_seconds)
        if self.k > self.n_codes:
            raise ValueError(f"codebook.k={self.k} exceeds codebook.n_codes={self.n_codes}")


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
