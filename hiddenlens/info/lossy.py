"""Mutual information of high-dimensional layers via lossy compression.

Butakov et al. (2024, "Information Bottleneck Analysis of Deep Neural Networks via Lossy
Compression"): make the layer stochastic by adding Gaussian noise to its activations (as in
Goldfeld et al. 2019, so I(X;T) is finite), compress the noisy d-dimensional vectors to a few
dimensions (PCA or a small autoencoder), then estimate MI on the compressed vectors with a
k-NN estimator. By the data-processing inequality the compressed estimate targets a lower
bound of the layer's MI; the compressor's fidelity (explained variance / reconstruction
error) is reported next to it so a user sees how much was thrown away.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from hiddenlens._threads import blas_threads, torch_threads
from hiddenlens.info._validate import as_2d, check_not_constant, check_pair, is_discrete
from hiddenlens.info.result import MIEstimate


class PCACompressor(TransformerMixin, BaseEstimator):
    """PCA to ``n_components`` (scikit-learn), with the explained variance as fidelity."""

    def __init__(self, n_components: int = 4):
        self.n_components = n_components

    def fit(self, t: np.ndarray) -> PCACompressor:
        from sklearn.decomposition import PCA

        if not isinstance(self.n_components, int) or not 1 <= self.n_components <= min(t.shape):
            raise ValueError(
                f"n_components must be an int in [1, {min(t.shape)}], got {self.n_components!r}"
            )
        with blas_threads(1):
            self.pca_ = PCA(n_components=self.n_components, random_state=0).fit(t)
        self.fidelity_ = float(self.pca_.explained_variance_ratio_.sum())
        return self

    def transform(self, t: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "pca_")
        with blas_threads(1):
            return self.pca_.transform(t)


class AutoencoderCompressor(TransformerMixin, BaseEstimator):
    """A small tanh autoencoder d -> hidden -> n_components -> hidden -> d trained with MSE.

    ``fidelity_`` is 1 - (reconstruction MSE / total variance), comparable to PCA's explained
    variance ratio.
    """

    def __init__(
        self,
        n_components: int = 4,
        hidden: int = 64,
        n_steps: int = 300,
        lr: float = 3e-3,
        batch_size: int = 256,
        seed: int = 0,
    ):
        self.n_components = n_components
        self.hidden = hidden
        self.n_steps = n_steps
        self.lr = lr
        self.batch_size = batch_size
        self.seed = seed

    def fit(self, t: np.ndarray) -> AutoencoderCompressor:
        import torch

        if not isinstance(self.n_components, int) or self.n_components < 1:
            raise ValueError(f"n_components must be a positive int, got {self.n_components!r}")
        torch.manual_seed(self.seed)
        x = torch.as_tensor(t, dtype=torch.float32)
        self.mean_, self.std_ = x.mean(0), x.std(0).clamp_min(1e-8)
        x = (x - self.mean_) / self.std_
        d, h = x.shape[1], self.hidden
        self.encoder_ = torch.nn.Sequential(
            torch.nn.Linear(d, h), torch.nn.Tanh(), torch.nn.Linear(h, self.n_components)
        )
        dec = torch.nn.Sequential(
            torch.nn.Linear(self.n_components, h), torch.nn.Tanh(), torch.nn.Linear(h, d)
        )
        opt = torch.optim.Adam([*self.encoder_.parameters(), *dec.parameters()], lr=self.lr)
        gen = torch.Generator().manual_seed(self.seed)
        with torch_threads(1):
            for _ in range(self.n_steps):
                idx = torch.randint(
                    0, x.shape[0], (min(self.batch_size, x.shape[0]),), generator=gen
                )
                loss = ((dec(self.encoder_(x[idx])) - x[idx]) ** 2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
            with torch.no_grad():
                mse = float(((dec(self.encoder_(x)) - x) ** 2).mean())
        self.fidelity_ = 1.0 - mse / float(x.var(0).mean())
        return self

    def transform(self, t: np.ndarray) -> np.ndarray:
        import torch

        check_is_fitted(self, "encoder_")
        with torch.no_grad(), torch_threads(1):
            x = (torch.as_tensor(t, dtype=torch.float32) - self.mean_) / self.std_
            return self.encoder_(x).double().numpy()


def _make_compressor(compressor, n_components: int, seed: int):
    if compressor == "pca":
        return PCACompressor(n_components)
    if compressor == "ae":
        return AutoencoderCompressor(n_components, seed=seed)
    if hasattr(compressor, "fit") and hasattr(compressor, "transform"):
        return compressor
    raise ValueError(
        f"compressor must be 'pca', 'ae' or an object with fit/transform, got {compressor!r}"
    )


def lossy_mutual_information(
    t,
    y,
    *,
    noise_std: float = 0.1,
    compressor="pca",
    n_components: int = 4,
    estimator: str = "ksg",
    seed: int = 0,
    **params,
) -> MIEstimate:
    """I(T + noise; Y) estimated on compressed vectors.

    Args:
        t: [n, d] layer activations.
        y: [n] integer labels, or [n, d_y] continuous (compressed too when d_y > n_components).
        noise_std: std of the added Gaussian noise, relative to t's overall std.
        compressor: "pca", "ae" or an object with fit/transform.
        n_components: dimension of the compressed vectors.
        estimator: MI estimator applied to the compressed vectors ("ksg" by default).
        **params: passed to that estimator.
    """
    from hiddenlens.info.estimate import mutual_information

    if not (np.isfinite(noise_std) and noise_std >= 0):
        raise ValueError(f"noise_std must be a finite float >= 0, got {noise_std!r}")
    ta, ya = as_2d(t, "t").astype(np.float64), as_2d(y, "y")
    check_pair(ta, ya, "t", "y")
    check_not_constant(ta, "t")
    rng = np.random.default_rng(seed)
    noisy = ta + noise_std * ta.std() * rng.standard_normal(ta.shape)
    comp_t = _make_compressor(compressor, n_components, seed).fit(noisy)
    z = comp_t.transform(noisy)
    fid = {"fidelity_t": float(comp_t.fidelity_)}
    target = ya
    if not is_discrete(ya) and ya.shape[1] > n_components:
        ya_f = ya.astype(np.float64)
        comp_y = _make_compressor(compressor, n_components, seed + 1).fit(ya_f)
        target = comp_y.transform(ya_f)
        fid["fidelity_y"] = float(comp_y.fidelity_)
    est = mutual_information(z, target, estimator=estimator, **params)
    name = compressor if isinstance(compressor, str) else type(compressor).__name__
    return MIEstimate(
        bits=est.bits,
        estimator=f"lossy+{est.estimator}",
        params={
            **est.params,
            "noise_std": float(noise_std),
            "compressor": name,
            "n_components": int(n_components),
        },
        n=est.n,
        cap=est.cap,
        extras={**est.extras, **fid},
    )
