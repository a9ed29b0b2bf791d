"""Two-feature (core / shortcut) classification data with an exact Bayes-optimal reference.

After Hermann, Mobahi, Fel & Mozer, "On the Foundations of Shortcut Learning" (ICLR 2024):
a binary label y and two latent features, *core* and *shortcut*, each with its own
**predictivity** (probability that the class it points to is the label) and **availability**
(how easily it is extracted: the signal amplitude and the number of input units it covers).

Generative model (per example, s = 2y - 1, y ~ Bernoulli(1/2)):
    v_k = s with probability p_k, else -s                  (k in {core, shortcut})
    z_k = v_k                      (latent="binary")
    z_k = v_k * |g|, g ~ N(0, 1)   (latent="gaussian": z_k ~ N(0, 1) marginally)
    x   = noise * N(0, I);  x[units of k] += amplitude_k * z_k
Units: ``kind="image"`` puts feature k on a size_k x size_k patch of an image_size^2 image
(core top-left, shortcut bottom-right); ``kind="vector"`` puts it on size_k coordinates of a
``dim``-vector, optionally rotated by a fixed random orthogonal matrix.

The Bayes-optimal classifier is exact: with m_k units and isotropic noise the patch mean
r_k = A_k z_k + tau_k e (tau_k = noise / sqrt(m_k)) is sufficient for feature k, and the
posterior log-odds is a sum of one closed-form term per feature (see ``_feature_log_odds``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

SPLITS = ("iid", "agree", "conflict", "shortcut_random")
KINDS = ("image", "vector")
LATENTS = ("binary", "gaussian")


@dataclass
class TwoFeatureConfig:
    """Parameters of the two-feature generator.

    core_predictivity / shortcut_predictivity: P(feature's class == label), in [0, 1].
    core_amplitude / shortcut_amplitude: signal amplitude (availability), > 0.
    core_size / shortcut_size: patch side (image) or number of coordinates (vector), >= 1.
    kind: "image" (1 x image_size x image_size inputs) or "vector" (``dim`` inputs).
    latent: "binary" (z = +-1) or "gaussian" (z = sign * half-normal magnitude).
    noise: std of the isotropic Gaussian input noise, >= 0.
    image_size: side of the image (kind="image").
    dim: input dimension (kind="vector").
    rotate: mix the vector coordinates by a fixed random rotation (kind="vector").
    rotation_seed: seed of that rotation.
    """

    core_predictivity: float = 1.0
    shortcut_predictivity: float = 0.9
    core_amplitude: float = 1.0
    shortcut_amplitude: float = 1.0
    core_size: int = 2
    shortcut_size: int = 2
    kind: str = "image"
    latent: str = "binary"
    noise: float = 1.0
    image_size: int = 12
    dim: int = 16
    rotate: bool = False
    rotation_seed: int = 0

    def __post_init__(self) -> None:
        for name in ("core_predictivity", "shortcut_predictivity"):
            p = getattr(self, name)
            if not isinstance(p, (int, float)) or not 0.0 <= float(p) <= 1.0:
                raise ValueError(f"{name}={p!r}: a predictivity must be a number in [0, 1]")
        for name in ("core_amplitude", "shortcut_amplitude"):
            a = getattr(self, name)
            if not isinstance(a, (int, float)) or not (math.isfinite(a) and a > 0):
                raise ValueError(f"{name}={a!r}: an amplitude must be a finite number > 0")
        if not isinstance(self.noise, (int, float)) or not (
            math.isfinite(self.noise) and self.noise >= 0
        ):
            raise ValueError(f"noise={self.noise!r}: must be a finite number >= 0")
        if self.kind not in KINDS:
            raise ValueError(f"kind={self.kind!r}: accepted {KINDS}")
        if self.latent not in LATENTS:
            raise ValueError(f"latent={self.latent!r}: accepted {LATENTS}")
        for name in ("core_size", "shortcut_size", "image_size", "dim"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}={v!r}: must be an int >= 1")
        if self.kind == "image":
            c, s, n = self.core_size, self.shortcut_size, self.image_size
            # core patch sits at (0, 0), shortcut patch at the opposite corner: disjoint iff
            # the two sides fit along one axis.
            if c + s > n:
                raise ValueError(
                    f"core_size={c} + shortcut_size={s} > image_size={n}: the two patches "
                    "would overlap; accepted core_size + shortcut_size <= image_size"
                )
        elif self.core_size + self.shortcut_size > self.dim:
            raise ValueError(
                f"core_size={self.core_size} + shortcut_size={self.shortcut_size} > "
                f"dim={self.dim}: the features need disjoint coordinates"
            )

    @property
    def input_shape(self) -> tuple[int, ...]:
        n = self.image_size
        return (1, n, n) if self.kind == "image" else (self.dim,)

    def units(self, feature: str) -> int:
        """Number of input units carrying ``feature`` ("core" or "shortcut")."""
        size = self.core_size if feature == "core" else self.shortcut_size
        return size * size if self.kind == "image" else size

    def conflict_probability(self) -> float:
        """P(the two features point to different classes) under the generating distribution."""
        pc, ps = self.core_predictivity, self.shortcut_predictivity
        return pc * (1 - ps) + (1 - pc) * ps

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TwoFeatureSplit:
    """One split. x: [n, *input_shape] float32; y: [n] int64 in {0, 1};
    core / shortcut: [n] latent values z (their sign is the class each feature points to)."""

    name: str
    x: np.ndarray
    y: np.ndarray
    core: np.ndarray
    shortcut: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    @property
    def spurious(self) -> np.ndarray:
        """Spurious attribute: the class the shortcut points to (0/1), [n] int64."""
        return (self.shortcut > 0).astype(np.int64)

    @property
    def groups(self) -> np.ndarray:
        """Group id 2 * y + spurious (4 groups: label x shortcut class), [n] int64."""
        return 2 * self.y + self.spurious


def _signs(split: str, s: np.ndarray, cfg: TwoFeatureConfig, rng) -> tuple:
    n = len(s)
    if split == "iid":
        vc = np.where(rng.random(n) < cfg.core_predictivity, s, -s)
        vs = np.where(rng.random(n) < cfg.shortcut_predictivity, s, -s)
    elif split == "agree":
        vc, vs = s, s.copy()
    elif split == "conflict":
        vc, vs = s, -s
    else:  # shortcut_random: core gives the label, the shortcut is a coin flip
        vc, vs = s, rng.choice(np.array([-1.0, 1.0]), size=n)
    return vc, vs


def _check_conflict_possible(cfg: TwoFeatureConfig) -> None:
    # Cue-conflict items are out of distribution by design, but the Bayes reference is only
    # defined on them if they have positive density: noise > 0, or a nonzero probability that
    # the two features disagree.
    if cfg.noise == 0 and cfg.conflict_probability() == 0:
        raise ValueError(
            "cannot build a conflict split: with noise=0 and predictivities "
            f"core={cfg.core_predictivity}, shortcut={cfg.shortcut_predictivity} the two "
            "features never disagree, so conflict items have zero probability and the Bayes "
            "reference is undefined on them; use noise > 0 or predictivities with "
            "p_c*(1-p_s) + (1-p_c)*p_s > 0"
        )


def rotation(cfg: TwoFeatureConfig) -> np.ndarray | None:
    """The fixed orthogonal mixing matrix [dim, dim] of a rotated vector config (else None)."""
    if cfg.kind != "vector" or not cfg.rotate:
        return None
    g = np.random.default_rng(cfg.rotation_seed).standard_normal((cfg.dim, cfg.dim))
    q, r = np.linalg.qr(g)
    return q * np.sign(np.diag(r))  # sign fix makes the draw Haar-uniform and deterministic


def generate(cfg: TwoFeatureConfig, n: int, split: str = "iid", seed: int = 0) -> TwoFeatureSplit:
    """Draw ``n`` examples of ``split`` ("iid", "agree", "conflict", "shortcut_random").

    iid follows the generating distribution; in the other splits the core agrees with the
    label and the shortcut agrees (agree), disagrees (conflict) or is random.
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: accepted {SPLITS}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n={n!r}: must be an int >= 1")
    if split == "conflict":
        _check_conflict_possible(cfg)
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    y = rng.integers(0, 2, size=n)
    s = 2.0 * y - 1.0
    vc, vs = _signs(split, s, cfg, rng)
    if cfg.latent == "gaussian":
        vc = vc * np.abs(rng.standard_normal(n))
        vs = vs * np.abs(rng.standard_normal(n))
    x = cfg.noise * rng.standard_normal((n, *cfg.input_shape))
    if cfg.kind == "image":
        c, k, side = cfg.core_size, cfg.shortcut_size, cfg.image_size
        x[:, 0, :c, :c] += (cfg.core_amplitude * vc)[:, None, None]
        x[:, 0, side - k :, side - k :] += (cfg.shortcut_amplitude * vs)[:, None, None]
    else:
        c, k = cfg.core_size, cfg.shortcut_size
        x[:, :c] += (cfg.core_amplitude * vc)[:, None]
        x[:, c : c + k] += (cfg.shortcut_amplitude * vs)[:, None]
        q = rotation(cfg)
        if q is not None:
            x = x @ q.T
    return TwoFeatureSplit(
        name=split, x=x.astype(np.float32), y=y.astype(np.int64), core=vc, shortcut=vs
    )


def feature_means(cfg: TwoFeatureConfig, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sufficient statistics (r_core, r_shortcut), the mean of x over each feature's units."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape[1:] != cfg.input_shape:
        raise ValueError(f"x has shape {x.shape}; this config needs [n, *{cfg.input_shape}]")
    if cfg.kind == "image":
        c, k, side = cfg.core_size, cfg.shortcut_size, cfg.image_size
        return x[:, 0, :c, :c].mean(axis=(1, 2)), x[:, 0, side - k :, side - k :].mean(axis=(1, 2))
    q = rotation(cfg)
    if q is not None:
        x = x @ q  # undo the mixing (q orthogonal)
    c, k = cfg.core_size, cfg.shortcut_size
    return x[:, :c].mean(axis=1), x[:, c : c + k].mean(axis=1)


def _log(p: float) -> float:
    return math.log(p) if p > 0 else -math.inf


def _feature_log_odds(r: np.ndarray, p: float, amp: float, tau: float, latent: str) -> np.ndarray:
    """log p(r | y=1) - log p(r | y=0) for one feature's sufficient statistic r.

    r = amp * z + tau * e with z = v (binary) or v * |g| (gaussian), v = +-s w.p. p / 1-p.
    binary:   p(r | v) ∝ exp(v * a), a = amp * r / tau^2
    gaussian: r | v is skew-normal, p(r | v) ∝ Phi(v * c * r), c = amp / (tau * sqrt(amp^2+tau^2))
    The factors common to both classes cancel in the ratio.
    """
    lp, lq = _log(p), _log(1.0 - p)
    if tau == 0:  # noise-free: the sign of r is the feature's class
        llr = lp - lq if p not in (0.0, 1.0) else (math.inf if p == 1 else -math.inf)
        return np.sign(r) * llr
    if latent == "binary":
        up, down = amp * r / tau**2, -amp * r / tau**2
    else:
        from scipy.special import log_ndtr

        c = amp / (tau * math.hypot(amp, tau))
        up, down = log_ndtr(c * r), log_ndtr(-c * r)
    return np.logaddexp(lp + up, lq + down) - np.logaddexp(lp + down, lq + up)


def bayes_log_odds(cfg: TwoFeatureConfig, x: np.ndarray) -> np.ndarray:
    """Exact posterior log-odds log P(y=1|x) - log P(y=0|x) of the generating distribution, [n]."""
    rc, rs = feature_means(cfg, x)
    out = np.zeros(len(rc))
    for r, feat in ((rc, "core"), (rs, "shortcut")):
        p = cfg.core_predictivity if feat == "core" else cfg.shortcut_predictivity
        amp = cfg.core_amplitude if feat == "core" else cfg.shortcut_amplitude
        with np.errstate(invalid="ignore"):
            out = out + _feature_log_odds(
                r, p, amp, cfg.noise / math.sqrt(cfg.units(feat)), cfg.latent
            )
    if np.isnan(out).any():
        raise ValueError(
            "x holds items that have zero probability under this config (two deterministic "
            "features disagreeing without noise); the Bayes posterior is undefined there"
        )
    return out


@dataclass
class ShortcutDataset:
    """A training split plus the evaluation splits of one config, with its Bayes reference.

    Build with :func:`make_dataset`. ``splits`` maps split name -> TwoFeatureSplit.
    """

    config: TwoFeatureConfig
    train: TwoFeatureSplit
    splits: dict[str, TwoFeatureSplit] = field(default_factory=dict)
    seed: int = 0

    def bayes_log_odds(self, x: np.ndarray) -> np.ndarray:
        return bayes_log_odds(self.config, x)

    def bayes_predict(self, x: np.ndarray) -> np.ndarray:
        """Bayes-optimal decisions (0/1) [n]; ties (log-odds 0) go to class 1."""
        return (self.bayes_log_odds(x) >= 0).astype(np.int64)


def make_dataset(
    cfg: TwoFeatureConfig,
    n_train: int = 1000,
    n_test: int = 2000,
    seed: int = 0,
    splits: tuple[str, ...] = SPLITS,
) -> ShortcutDataset:
    """A training set of ``n_train`` iid items and ``n_test`` items of each split in ``splits``."""
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise ValueError(f"unknown splits {unknown}; accepted {SPLITS}")
    train = generate(cfg, n_train, "iid", seed=2 * seed)
    tests = {s: generate(cfg, n_test, s, seed=2 * seed + 1) for s in splits}
    return ShortcutDataset(config=cfg, train=train, splits=tests, seed=seed)
