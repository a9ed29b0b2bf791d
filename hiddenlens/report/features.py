"""Per-feature summaries for dashboards: density, histogram, top and quantile contexts.

Works for any latent code over cached token rows — SAE latents, codebook codes, neurons —
given the activations as a dense array or a scipy sparse matrix ``[n_rows, n_latents]`` and
the store's row metadata (``token_id``, ``sample_idx``). Contexts are the neighbouring rows of
the same document, so they show the tokens around each activation (the SAELens / Neuronpedia
dashboard view).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from hiddenlens.store.source import as_source, iter_rows
from hiddenlens.store.top import best_k


@dataclass
class FeatureExample:
    """A window of tokens around one activating row; ``focus`` indexes the row itself."""

    tokens: list[str]
    acts: list[float]
    focus: int
    value: float


@dataclass
class FeatureCard:
    """Everything a dashboard shows about one latent."""

    index: int
    density: float
    max_act: float
    mean_act: float
    hist_counts: list[int]
    hist_edges: list[float]
    top: list[FeatureExample]
    quantiles: list[dict[str, Any]] = field(default_factory=list)
    effects_pos: list[tuple[str, float]] = field(default_factory=list)
    effects_neg: list[tuple[str, float]] = field(default_factory=list)
    label: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _as_csc(latent_acts):
    import scipy.sparse as sp

    if sp.issparse(latent_acts):
        return latent_acts.tocsc()
    arr = np.asarray(latent_acts)
    if arr.ndim != 2:
        raise ValueError(f"latent_acts must be 2-D [n_rows, n_latents], got shape {arr.shape}")
    return sp.csc_matrix(arr)


def _example(col_rows, col_vals, row, token_ids, sample_idx, tokens_of, context) -> FeatureExample:
    """Context window of ``row``; the latent's activations come from its sorted CSC column."""
    lo, hi = max(0, row - context), min(len(token_ids), row + context + 1)
    rows = np.arange(lo, hi)
    rows = rows[sample_idx[rows] == sample_idx[row]]
    acts = np.zeros(len(rows))
    a, b = np.searchsorted(col_rows, [rows[0], rows[-1] + 1])
    acts[col_rows[a:b] - rows[0]] = col_vals[a:b]
    focus = int(np.flatnonzero(rows == row)[0])
    return FeatureExample(
        tokens=tokens_of(token_ids[rows]),
        acts=[round(float(v), 4) for v in acts],
        focus=focus,
        value=round(float(acts[focus]), 4),
    )


def feature_cards(
    latent_acts,
    token_ids: np.ndarray,
    sample_idx: np.ndarray,
    tokenizer=None,
    *,
    latents: list[int] | None = None,
    n_top: int = 10,
    n_quantiles: int = 4,
    per_quantile: int = 3,
    context: int = 6,
    n_bins: int = 24,
    seed: int = 0,
) -> list[FeatureCard]:
    """Build a :class:`FeatureCard` for each latent (all latents by default).

    Args:
        latent_acts: ``[n_rows, n_latents]`` activations (dense or scipy sparse).
        token_ids, sample_idx: the store's row metadata, aligned with the rows.
        tokenizer: decodes token ids (``convert_ids_to_tokens``); ids are shown otherwise.
    """
    csc = _as_csc(latent_acts)
    csc.sort_indices()
    n_rows, n_latents = csc.shape
    token_ids, sample_idx = np.asarray(token_ids), np.asarray(sample_idx)
    if len(token_ids) != n_rows or len(sample_idx) != n_rows:
        raise ValueError(
            f"metadata has {len(token_ids)} token ids and {len(sample_idx)} sample ids "
            f"but latent_acts has {n_rows} rows"
        )
    chosen = range(n_latents) if latents is None else latents
    bad = [i for i in chosen if not 0 <= i < n_latents]
    if bad:
        raise ValueError(f"latent indices {bad[:5]} out of range [0, {n_latents})")

    def tokens_of(ids):
        if tokenizer is None:
            return [str(int(i)) for i in ids]
        return [str(t) for t in tokenizer.convert_ids_to_tokens([int(i) for i in ids])]

    spec = _CardSpec(
        n_rows,
        token_ids,
        sample_idx,
        tokens_of,
        np.random.default_rng(seed),
        n_top,
        n_quantiles,
        per_quantile,
        context,
        n_bins,
    )
    cards = []
    for latent in chosen:
        start, stop = csc.indptr[latent], csc.indptr[latent + 1]
        rows, vals = csc.indices[start:stop], csc.data[start:stop]
        active = vals > 0
        rows, vals = rows[active], vals[active]
        cards.append(_card(latent, rows, vals, spec))
    return cards


@dataclass
class _CardSpec:
    """What every card of one :func:`feature_cards` call shares."""

    n_rows: int
    token_ids: np.ndarray
    sample_idx: np.ndarray
    tokens_of: Any
    rng: np.random.Generator
    n_top: int
    n_quantiles: int
    per_quantile: int
    context: int
    n_bins: int


def _card(latent, rows, vals, spec: _CardSpec) -> FeatureCard:
    n_rows, rng, n_top, n_bins = spec.n_rows, spec.rng, spec.n_top, spec.n_bins
    n_quantiles, per_quantile = spec.n_quantiles, spec.per_quantile

    def ex(r):
        return _example(
            rows, vals, int(r), spec.token_ids, spec.sample_idx, spec.tokens_of, spec.context
        )

    if len(vals) == 0:
        return FeatureCard(latent, 0.0, 0.0, 0.0, [], [], [])
    counts, edges = np.histogram(vals, bins=n_bins)
    best = rows[best_k(vals, n_top)]
    quantiles = []
    qs = np.quantile(vals, np.linspace(0, 1, n_quantiles + 1))
    for i in range(n_quantiles):
        inside = np.flatnonzero((vals >= qs[i]) & (vals <= qs[i + 1]))
        pick = rng.choice(inside, size=min(per_quantile, len(inside)), replace=False)
        quantiles.append(
            {
                "range": [round(float(qs[i]), 4), round(float(qs[i + 1]), 4)],
                "contains": len(inside) / len(vals),
                "examples": [ex(rows[j]) for j in sorted(pick)],
            }
        )
    return FeatureCard(
        index=int(latent),
        density=len(vals) / n_rows,
        max_act=float(vals.max()),
        mean_act=float(vals.mean()),
        hist_counts=counts.tolist(),
        hist_edges=[round(float(e), 4) for e in edges],
        top=[ex(r) for r in best],
        quantiles=quantiles,
    )


def encode_rows(encode, store, hook: str, *, chunk_rows: int = 8192, max_rows: int | None = None):
    """Latent activations of a store's rows as a scipy CSR matrix ``[n_rows, n_latents]``.

    store: anything :func:`hiddenlens.store.as_source` accepts. ``encode`` maps a float32
    tensor ``[b, d]`` to latents ``[b, n_latents]`` (an SAE's
    ``encode``, a codebook's code indicator, ...). Rows are read in order, chunk by chunk, and
    only the nonzero latents are kept, so memory follows the sparsity, not ``n_latents``.
    """
    import scipy.sparse as sp
    import torch

    parts = []
    with torch.no_grad():
        for _, rows in iter_rows(as_source(store), hook, chunk_rows, max_rows):
            x = torch.from_numpy(np.array(rows, dtype=np.float32))  # a writable copy
            z = encode(x)
            z = z.detach().cpu().numpy() if hasattr(z, "detach") else np.asarray(z)
            parts.append(sp.csr_matrix(z.astype(np.float32)))
    if not parts:
        raise ValueError(f"store has no rows for {hook!r}")
    return sp.vstack(parts, format="csr")
