"""Feature visualisation by activation maximisation, and its multifaceted variant.

- Activation maximisation (Erhan et al. 2009; Simonyan et al. 2014; Yosinski et al.,
  "Understanding Neural Networks Through Deep Visualization", 2015; Olah et al., "Feature
  Visualization", Distill 2017): optimise an input image to maximise a unit, regularised by
  random jitter, periodic Gaussian blur, L2 decay, and optionally a frequency prior (the image
  parameterised by its 2-D Fourier spectrum scaled by 1/frequency, as in Lucid).
- Multifaceted feature visualisation (Nguyen, Yosinski & Clune, "Multifaceted Feature
  Visualization", 2016): cluster the unit's top-activating real inputs (on their hidden
  activations, PCA then k-means) and optimise one image per cluster, each started from the
  cluster's mean image, to expose the different facets a unit responds to.

Objectives: an int (unit / channel index, averaged over spatial positions or tokens), a tuple
index into one example's activation, a callable ``act -> [n]``, :func:`sae_latent` or
:func:`code_direction`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from hiddenlens.attribution._core import run_model

__all__ = [
    "FeatureVis",
    "activation_maximisation",
    "multifaceted_visualisation",
    "objective_values",
    "sae_latent",
    "code_direction",
    "top_activating_examples",
]

Objective = int | tuple | Callable[[Tensor], Tensor]


def _per_position(act: Tensor) -> Tensor:
    """[n, positions, d]: channels last for conv maps, tokens for sequences."""
    if act.ndim == 4:
        return act.flatten(2).transpose(1, 2)
    if act.ndim == 3:
        return act
    return act[:, None]


def sae_latent(sae, latent: int) -> Callable[[Tensor], Tensor]:
    """Objective: mean activation of SAE latent ``latent`` over positions (any encode/decode)."""

    def fn(act: Tensor) -> Tensor:
        rows = _per_position(act)
        z = sae.encode(rows.reshape(-1, rows.shape[-1]))
        return z.reshape(rows.shape[0], rows.shape[1], -1)[..., latent].mean(1)

    return fn


def code_direction(codebook: Tensor, code: int) -> Callable[[Tensor], Tensor]:
    """Objective: mean inner product of the activation with codebook vector ``code`` [n_codes, d]."""
    vec = codebook[code].detach()
    return lambda act: (_per_position(act) @ vec.to(act)).mean(1)


def _objective(objective: Objective) -> Callable[[Tensor], Tensor]:
    if callable(objective):
        return objective
    if isinstance(objective, int):
        return lambda act: act[:, objective].reshape(act.shape[0], -1).mean(1)
    if isinstance(objective, tuple):
        return lambda act: act[(slice(None), *objective)].reshape(act.shape[0], -1).mean(1)
    raise TypeError(f"objective must be an int, a tuple index or a callable, got {objective!r}")


def objective_values(
    model, hook_point: str, objective: Objective, x: Tensor, batch_size: int = 256
):
    """(values [N], flattened activations [N, D]) of the objective on real inputs, no grad."""
    from hiddenlens.attribution.layer import capture_activations

    fn = _objective(objective)
    vals, acts = [], []
    for i in range(0, x.shape[0], batch_size):
        act = next(iter(capture_activations(model, x[i : i + batch_size], hook_point).values()))
        with torch.no_grad():
            vals.append(fn(act))
        acts.append(act.flatten(1))
    return torch.cat(vals), torch.cat(acts)


@dataclass
class FeatureVis:
    """images: [n, *shape] in value_range; trace: objective per step [steps, n]."""

    images: Tensor
    trace: np.ndarray
    final: np.ndarray
    facets: list[np.ndarray] = field(default_factory=list)
    facet_means: Tensor | None = None


def _fourier_scale(h: int, w: int, decay: float = 1.0) -> Tensor:
    fy = torch.fft.fftfreq(h)[:, None]
    fx = torch.fft.rfftfreq(w)[None, :]
    freq = (fx**2 + fy**2).sqrt()
    return 1.0 / freq.clamp_min(1.0 / max(h, w)) ** decay


def _gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    radius = max(1, int(round(2 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(
        F.pad(x, (radius, radius, 0, 0), mode="replicate"),
        k.view(1, 1, 1, -1).repeat(c, 1, 1, 1),
        groups=c,
    )
    return F.conv2d(
        F.pad(x, (0, 0, radius, radius), mode="replicate"),
        k.view(1, 1, -1, 1).repeat(c, 1, 1, 1),
        groups=c,
    )


class _Image:
    """An image batch as a function of free parameters: sigmoid(pixels) or sigmoid(irfft(1/f x
    spectrum)) (the frequency prior), mapped into ``value_range``."""

    def __init__(self, shape, n: int, lo: float, hi: float, fourier: bool, init, gen) -> None:
        c, h, w = shape
        self.lo, self.hi, self.fourier, self.hw = lo, hi, fourier, (h, w)
        if fourier:
            self.scale = _fourier_scale(h, w)
            self.param = 0.01 * torch.randn((n, c, h, w // 2 + 1, 2), generator=gen)
        else:
            start = (
                torch.full((n, c, h, w), 0.5) if init is None else (init.detach() - lo) / (hi - lo)
            )
            start = start.clamp(0.02, 0.98) + 0.01 * torch.randn(start.shape, generator=gen)
            self.param = torch.logit(start.clamp(0.01, 0.99))
        self.param.requires_grad_(True)

    def __call__(self) -> Tensor:
        if self.fourier:
            spec = torch.view_as_complex(self.param) * self.scale
            raw = torch.fft.irfft2(spec, s=self.hw, norm="ortho") * 4
        else:
            raw = self.param
        return self.lo + (self.hi - self.lo) * torch.sigmoid(raw)

    @torch.no_grad()
    def blur(self, sigma: float) -> None:
        """Blur the image and map it back to the pixel parameter (Yosinski et al. 2015)."""
        blurred = (_gaussian_blur(self(), sigma) - self.lo) / (self.hi - self.lo)
        self.param.copy_(torch.logit(blurred.clamp(1e-4, 1 - 1e-4)))


def activation_maximisation(
    model,
    hook_point: str,
    objective: Objective,
    *,
    shape: tuple[int, int, int],
    n_images: int = 1,
    steps: int = 200,
    lr: float = 0.05,
    jitter: int = 1,
    blur_every: int = 4,
    blur_sigma: float = 0.5,
    l2_decay: float = 1e-3,
    frequency_prior: bool = False,
    init: Tensor | None = None,
    value_range: tuple[float, float] = (0.0, 1.0),
    seed: int = 0,
) -> FeatureVis:
    """Optimise ``n_images`` inputs of ``shape`` (C, H, W) to maximise ``objective`` at ``hook_point``.

    Each step: jitter (random roll by up to ``jitter`` px), loss = -objective + l2_decay *
    ||image - mid-grey||^2, Adam; every ``blur_every`` steps a Gaussian blur (pixel
    parameterisation). init: [n_images, C, H, W] starting images (pixel parameterisation only).
    """
    from hiddenlens.hooks import patch

    if steps < 1 or lr <= 0:
        raise ValueError(f"steps must be >= 1 and lr > 0, got steps={steps}, lr={lr}")
    if frequency_prior and init is not None:
        raise ValueError("init needs the pixel parameterisation (frequency_prior=False)")
    fn = _objective(objective)
    lo, hi = value_range
    gen = torch.Generator().manual_seed(seed)
    image = _Image(shape, n_images, lo, hi, frequency_prior, init, gen)
    opt = torch.optim.Adam([image.param], lr=lr)
    seen: dict[str, Tensor] = {}

    def record(act: Tensor) -> Tensor:
        seen["act"] = act
        return act

    trace = []
    with patch(model, {hook_point: record}), torch.enable_grad():
        for step in range(steps):
            img = image()
            shifted = img
            if jitter:
                dy, dx = torch.randint(-jitter, jitter + 1, (2,), generator=gen).tolist()
                shifted = torch.roll(img, shifts=(dy, dx), dims=(2, 3))
            run_model(model, shifted)
            value = fn(seen["act"])
            loss = -value.sum() + l2_decay * ((img - (lo + hi) / 2) ** 2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            trace.append(value.detach().numpy().copy())
            if blur_every and not frequency_prior and (step + 1) % blur_every == 0:
                image.blur(blur_sigma)
    with torch.no_grad():
        final_img = image().detach()
    final = objective_values(model, hook_point, fn, final_img)[0].numpy()
    return FeatureVis(final_img, np.asarray(trace), final)


def multifaceted_visualisation(
    model,
    hook_point: str,
    objective: Objective,
    data: Tensor,
    *,
    n_facets: int = 3,
    top_n: int = 30,
    n_components: int = 10,
    seed: int = 0,
    **kwargs,
) -> FeatureVis:
    """One visualisation per facet of the unit: cluster its ``top_n`` top-activating inputs in
    ``data`` [N, C, H, W] and start each optimisation from a cluster's mean image.

    Extra keyword arguments go to :func:`activation_maximisation`. ``facets[i]`` holds the data
    indices of facet i; ``facet_means`` the starting images.
    """
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    if not 1 <= n_facets <= top_n <= data.shape[0]:
        raise ValueError(
            f"need 1 <= n_facets ({n_facets}) <= top_n ({top_n}) <= len(data) ({data.shape[0]})"
        )
    fn = _objective(objective)
    values, acts = objective_values(model, hook_point, fn, data)
    top = torch.argsort(values, descending=True)[:top_n].numpy()
    feats = acts[top].numpy()
    feats = PCA(n_components=min(n_components, *feats.shape), random_state=seed).fit_transform(
        feats
    )
    labels = KMeans(n_clusters=n_facets, n_init=10, random_state=seed).fit_predict(feats)
    facets = [top[labels == k] for k in range(n_facets)]
    means = torch.stack([data[idx].mean(0) for idx in facets])
    vis = activation_maximisation(
        model,
        hook_point,
        fn,
        shape=tuple(data.shape[1:]),
        n_images=n_facets,
        init=means,
        seed=seed,
        **kwargs,
    )
    vis.facets, vis.facet_means = facets, means
    return vis


def top_activating_examples(
    store,
    hook_point: str,
    unit: int | Callable[[np.ndarray], np.ndarray],
    *,
    k: int = 10,
    chunk: int = 16384,
):
    """The ``k`` cached rows where a unit is most active — the text-model counterpart of
    activation maximisation (dataset examples instead of optimised inputs).

    store: anything :func:`hiddenlens.store.as_source` accepts (an ActivationStore, a dict
    of arrays, ...); unit: a column index or a function rows [n, d] -> [n] (e.g. one SAE
    latent). Returns a :class:`hiddenlens.store.TopRows`: ``rows``, ``values`` and the
    source's meta columns (``sample_idx``, ``position``, ``token_id``) at those rows, best
    first (ties: the earlier row).
    """
    from hiddenlens.store.top import top_rows

    fn = unit if callable(unit) else (lambda rows: rows[:, unit])
    return top_rows(store, hook_point, fn, k, chunk_rows=chunk)
