"""The analyzer-section tables of an ``hiddenlens analyze`` run config (``[sae]``,
``[probe]``, ``[collapse]``, ``[info]``, ``[shortcut]``, ``[attribution]``, ``[lens]``,
``[structural]``, ``[codebook]``), one validated dataclass each; ``hiddenlens.analyze.config`` re-exports them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from hiddenlens.analyze._checks import _one_of, _pos_float, _pos_int, _str_list


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
    """``[collapse]``: NC1-NC4 / CDNV per layer for each label, plus a UFM reference run and,
    for ``nn.Sequential`` classifiers, the geometry of mixed inputs (Fisher et al. 2024)."""

    labels: list[str] = field(default_factory=list)
    hooks: list[str] | None = None
    max_rows: int | None = None
    ufm_steps: int = 2000  # 0: no unconstrained-features reference
    mixup_classes: int = 5  # classifiers: mix the commonest N classes pairwise (0: off)

    def __post_init__(self) -> None:
        self.labels = _str_list("collapse.labels", self.labels, allow_none=False)
        self.hooks = _str_list("collapse.hooks", self.hooks)
        _pos_int("collapse.max_rows", self.max_rows, allow_none=True)
        _pos_int("collapse.ufm_steps", self.ufm_steps, zero=True)
        _pos_int("collapse.mixup_classes", self.mixup_classes, zero=True)
        if self.mixup_classes == 1:
            raise ValueError("collapse.mixup_classes must be 0 (off) or at least 2 (a pair to "
                             "mix), got 1")


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
    and SAE-latent attribution, with a target chosen for the model kind; for a language model
    per-head DLA (TransformerLens) and a back-patching sweep; for an image model the
    missingness bias of black / grey / neighbour / layer masking."""

    hooks: list[str] | None = None
    examples: int = 4
    n_steps: int = 32
    seq_len: int = 32
    reference: str = "How do I debug a Python program?"  # encoders: similarity target
    pair: list[str] = field(
        default_factory=lambda: ["The cat sat on the warm mat.", "The dog sat on the warm mat."]
    )
    dla_top: int = 8  # heads listed in the per-head DLA table (TransformerLens models)
    back_patching_queries: int = 16  # text prefixes swept (0: no back-patching)
    back_patching_hooks: int = 6  # residual hooks swept, evenly spaced (~n^2/2 passes per length)
    missingness_examples: int = 64  # images whose border is removed (image models)
    missingness_sizes: list[int] = field(default_factory=lambda: [1, 2])  # border widths; [] = off
    missingness_grey: float | None = None  # grey masking's value (default: the images' mean)

    def __post_init__(self) -> None:
        self.hooks = _str_list("attribution.hooks", self.hooks)
        for name in ("examples", "n_steps", "seq_len", "dla_top", "missingness_examples"):
            _pos_int(f"attribution.{name}", getattr(self, name))
        _pos_int("attribution.back_patching_queries", self.back_patching_queries, zero=True)
        if not isinstance(self.back_patching_hooks, int) or self.back_patching_hooks < 2:
            raise ValueError(f"attribution.back_patching_hooks must be an int >= 2, got {self.back_patching_hooks!r}")
        sizes = self.missingness_sizes
        if not isinstance(sizes, (list, tuple)) or not all(
                isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in sizes):
            raise ValueError(f"attribution.missingness_sizes must be a list of positive ints, got {sizes!r}")
        self.missingness_sizes = sorted(set(sizes))
        grey = self.missingness_grey
        if grey is not None and (isinstance(grey, bool) or not isinstance(grey, (int, float))
                                 or not math.isfinite(grey)):
            raise ValueError(f"attribution.missingness_grey must be a finite number or absent, got {grey!r}")
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
class StructuralSectionConfig:
    """``[structural]``: structural probes for code (Hewitt & Manning 2019; the AST-Probe of
    Hernandez Lopez et al. 2022) on each cached sequence hook: one-line Python statements with
    their syntax trees (from ``ast``), each token's vector the mean of its tokenizer pieces; a
    distance probe (UUAS, Spearman) and a depth probe (root accuracy, Spearman) per hook,
    trained on 2/3 of the statements and scored on the rest, against the right-branching
    chain. ``statements = "stdlib"`` reads the standard library's own source; ``"data"`` uses
    the run's texts that parse as one-line statements."""

    hooks: list[str] | None = None  # default: every cached hook
    statements: str = "stdlib"
    n_statements: int = 300
    rank: int = 32
    steps: int = 200
    lr: float = 0.01

    def __post_init__(self) -> None:
        self.hooks = _str_list("structural.hooks", self.hooks)
        _one_of("structural.statements", self.statements, ("stdlib", "data"))
        for name in ("n_statements", "rank", "steps"):
            _pos_int(f"structural.{name}", getattr(self, name))
        if self.n_statements < 12:
            raise ValueError(f"structural.n_statements must be at least 12 (train and test "
                             f"statements both needed), got {self.n_statements}")
        _pos_float("structural.lr", self.lr)


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
