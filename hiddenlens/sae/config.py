"""Configuration dataclasses for sparse autoencoders.

The shape of an SAE (:class:`SAEConfig`) is kept apart from how it is trained
(:class:`TrainConfig`), as in EleutherAI's sparsify. Both serialise to JSON next to every
artifact so a run can be repeated exactly.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from hiddenlens.sae import registry


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool (true/false), got {value!r}")


def _check_real(
    name: str, value: Any, low: float, high: float = math.inf, *, open_low=False, open_high=False
) -> None:
    """``value`` is a finite real number in the interval [low, high] (ends optionally open)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < low or (open_low and value == low) or value > high or (open_high and value == high):
        lo, hi = "(" if open_low else "[", ")" if open_high or high == math.inf else "]"
        raise ValueError(f"{name} must be in {lo}{low}, {high}{hi}, got {value!r}")


def _check_optional_str(name: str, value: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a string or None, got {value!r}")


def _check_widths(widths: Any, d_sae: int) -> list[int]:
    if not isinstance(widths, (list, tuple)) or not widths:
        raise ValueError(f"matryoshka_widths must be a non-empty list of ints, got {widths!r}")
    for w in widths:
        _check_positive_int("matryoshka_widths[i]", w)
    if any(a >= b for a, b in zip(widths[:-1], widths[1:])) or widths[-1] > d_sae:
        raise ValueError(
            f"matryoshka_widths={list(widths)} must increase strictly up to d_sae={d_sae}"
        )
    return list(widths)


def _check_device(device: Any) -> None:
    if not isinstance(device, str) or not device:
        raise ValueError(f"device must be a torch device string such as 'cpu', got {device!r}")
    if device == "cpu":
        return
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"device {device!r} is not a torch device: {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but no CUDA GPU is available")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} GPU(s) present")


@dataclass
class SAEConfig:
    """Shape and inference behaviour of a sparse autoencoder.

    Fields:
        d_in: width of the activations the SAE reads.
        d_sae: number of latents (dictionary size).
        architecture: a registered architecture (``hiddenlens.sae.architecture_names()``; add your
            own with ``hiddenlens.sae.register_architecture``).
        k: active latents per row (``topk``/``gradient_topk``) or on average per row over a
            batch (``batchtopk``); required for the TopK family, ignored otherwise.
        apply_b_dec_to_input: subtract the decoder bias before encoding (SAELens default).
        jumprelu_bandwidth: width of the rectangle kernel of JumpReLU's straight-through
            estimator (Rajamanoharan et al. 2024).
        jumprelu_init_threshold: initial JumpReLU threshold.
        grad_beta: weight of the gradient term in the g-SAE selection score
            ``z + beta * z * |W_dec g|`` (Olmo et al. 2024).
        grad_normalize: divide ``|W_dec g|`` by its mean over latents per row so ``grad_beta``
            does not depend on the scale of the loss; ``False`` is the paper's literal form.
        matryoshka_widths: nested prefix sizes, strictly increasing and ending at d_sae, each
            of which must reconstruct the input (``matryoshka_batchtopk``; Bussmann et al.
            2025); ignored otherwise.
        d_out: width of the rows a transcoder reconstructs (its output hook's ``d``); None
            means d_in. Transcoders only.
        output_hook: the hook a transcoder reconstructs (``hook_point`` is its input).
        hook_point / model_id: provenance, written to ``cfg.json``.
    """

    d_in: int
    d_sae: int
    architecture: str = "topk"
    k: int | None = None
    apply_b_dec_to_input: bool = True
    jumprelu_bandwidth: float = 0.05
    jumprelu_init_threshold: float = 0.05
    grad_beta: float = 1.0
    grad_normalize: bool = True
    matryoshka_widths: list[int] | None = None
    d_out: int | None = None
    output_hook: str | None = None
    hook_point: str | None = None
    model_id: str | None = None

    def __post_init__(self) -> None:
        _check_positive_int("d_in", self.d_in)
        _check_positive_int("d_sae", self.d_sae)
        if not isinstance(self.architecture, str):
            raise TypeError(f"architecture must be a string, got {self.architecture!r}")
        if self.matryoshka_widths is not None:
            self.matryoshka_widths = _check_widths(self.matryoshka_widths, self.d_sae)
        if registry.facts(self.architecture)["topk_family"]:
            if self.k is None:
                raise ValueError(f"architecture {self.architecture!r} needs k (active latents)")
            _check_positive_int("k", self.k)
            if self.k > self.d_sae:
                raise ValueError(f"k={self.k} must be <= d_sae={self.d_sae}")
        elif self.k is not None:
            _check_positive_int("k", self.k)
        _check_bool("apply_b_dec_to_input", self.apply_b_dec_to_input)
        _check_bool("grad_normalize", self.grad_normalize)
        _check_real("jumprelu_bandwidth", self.jumprelu_bandwidth, 0.0, open_low=True)
        _check_real("jumprelu_init_threshold", self.jumprelu_init_threshold, 0.0, open_low=True)
        _check_real("grad_beta", self.grad_beta, 0.0)
        if self.d_out is not None:
            _check_positive_int("d_out", self.d_out)
        _check_optional_str("output_hook", self.output_hook)
        _check_optional_str("hook_point", self.hook_point)
        _check_optional_str("model_id", self.model_id)
        registry.get(self.architecture).check_config(self)  # the architecture's own checks

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SAEConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


#: TopK and BatchTopK SAEs' default encoder start (``TrainConfig.encoder_init_scale``)
TOPK_ENCODER_START = 1.0 / math.sqrt(3.0)


@dataclass
class TrainConfig:
    """How an SAE is trained (separate from its shape).

    Fields:
        total_tokens: rows to train on; steps = total_tokens // batch_size.
        batch_size: global rows per optimizer step (split across ranks under torchrun).
        lr, betas, eps: Adam hyper-parameters.
        lr_warmup_steps: linear warm-up from 0.
        lr_decay_fraction: linear decay to 0 over this final fraction of the steps.
        l1_coefficient: sparsity weight for relu (decoder-norm-weighted L1), gated, and the
            L0 weight of jumprelu.
        l1_warmup_steps: the sparsity weight ramps linearly from 0 over these steps.
        aux_k: latents used by the AuxK loss (default d_in // 2, Gao et al. App. B.1).
        aux_coefficient: AuxK weight (1/32 in Gao et al.).
        dead_tokens: a latent is dead after this many rows without firing.
        b_dec_init: "mean" (store statistics), "geometric_median" (Weiszfeld on a sample)
            or "zeros".
        normalize_activations: scale inputs so E||x|| = sqrt(d_in) during training; the
            scale is folded into the weights when the SAE is returned or saved.
        unit_norm_decoder: keep decoder rows at unit norm (gradient projection + renorm).
        encoder_init_scale: the starting encoder is multiplied by this. None: the
            architecture's own ``encoder_start`` -- 1/sqrt(3) of the decoder's transpose
            for TopK (and g-SAE) and BatchTopK (and Matryoshka), what sparsify's start
            amounts to (2-6% lower held-out FVU than Gao et al.'s tied 1 on MiniLM,
            ``experiments/sae_init``); 1 for the L1 architectures (the Anthropic
            April-update start their recipes were tuned with) and for transcoders, whose
            start nothing here has measured.
        batchtopk_threshold_lr: EMA rate of the BatchTopK inference threshold.
        checkpoint_every: write a resumable checkpoint every N steps (0: never); only with
            an ``out_dir``.
        on_nonfinite: "skip" (drop the rows holding NaN/inf, count them in the log and in
            ``train_info``) or "raise" (stop at the first one).
        max_nonfinite_fraction: "skip" stops with an error once more than this fraction
            of the rows read so far was dropped (a broken store, not a few bad rows).
        seed: seeds initialisation and the data order.
        device: torch device for training ("cuda" becomes "cuda:LOCAL_RANK" under torchrun).
        encoder_dtype: "float32", or "bfloat16" to run the TopK-family training encoder
            matmul (the latent choice) in bf16; weights, optimizer state, the chosen
            latents' values and all gradients stay fp32 (the master weights).
        num_threads: torch CPU threads while training (restored after); None keeps the
            current setting. 1 is fastest on small, shared CPU boxes, where thread
            synchronisation dominates the many small sparse ops of a step.
        log_every: steps between progress-bar updates.
    """

    total_tokens: int = 1_000_000
    batch_size: int = 4096
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    lr_warmup_steps: int = 0
    lr_decay_fraction: float = 0.2
    l1_coefficient: float = 5.0
    l1_warmup_steps: int = 0
    aux_k: int | None = None
    aux_coefficient: float = 1.0 / 32.0
    dead_tokens: int = 1_000_000
    b_dec_init: str = "mean"
    normalize_activations: bool = True
    unit_norm_decoder: bool = True
    encoder_init_scale: float | None = None
    batchtopk_threshold_lr: float = 0.01
    checkpoint_every: int = 1000
    on_nonfinite: str = "skip"
    max_nonfinite_fraction: float = 0.1
    seed: int = 0
    device: str = "cpu"
    encoder_dtype: str = "float32"
    num_threads: int | None = None
    log_every: int = 10
    extra: dict[str, Any] = field(default_factory=dict)

    #: The accepted values of the string fields (also the ``train-sae`` choices).
    CHOICES = {
        "b_dec_init": ("mean", "geometric_median", "zeros"),
        "on_nonfinite": ("skip", "raise"),
        "encoder_dtype": ("float32", "bfloat16"),
    }

    def __post_init__(self) -> None:
        _check_positive_int("total_tokens", self.total_tokens)
        _check_positive_int("batch_size", self.batch_size)
        if self.total_tokens < self.batch_size:
            raise ValueError(
                f"total_tokens={self.total_tokens} is less than one batch ({self.batch_size})"
            )
        _check_real("lr", self.lr, 0.0, open_low=True)
        _check_real("lr_decay_fraction", self.lr_decay_fraction, 0.0, 1.0)
        _check_real("eps", self.eps, 0.0, open_low=True)
        _check_real("l1_coefficient", self.l1_coefficient, 0.0)
        _check_real("aux_coefficient", self.aux_coefficient, 0.0)
        if self.encoder_init_scale is not None:
            _check_real("encoder_init_scale", self.encoder_init_scale, 0.0, open_low=True)
        _check_real("batchtopk_threshold_lr", self.batchtopk_threshold_lr, 0.0, 1.0, open_low=True)
        _check_real("max_nonfinite_fraction", self.max_nonfinite_fraction, 0.0, 1.0, open_high=True)
        if not isinstance(self.betas, (tuple, list)) or len(self.betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {self.betas!r}")
        for i, b in enumerate(self.betas):
            _check_real(f"betas[{i}]", b, 0.0, 1.0, open_high=True)
        for name in ("lr_warmup_steps", "l1_warmup_steps", "checkpoint_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be an int >= 0, got {v!r}")
        _check_bool("normalize_activations", self.normalize_activations)
        _check_bool("unit_norm_decoder", self.unit_norm_decoder)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {self.seed!r}")
        _check_device(self.device)
        for name, accepted in self.CHOICES.items():
            if getattr(self, name) not in accepted:
                raise ValueError(f"{name} must be one of {accepted}, got {getattr(self, name)!r}")
        if self.aux_k is not None:
            _check_positive_int("aux_k", self.aux_k)
        _check_positive_int("dead_tokens", self.dead_tokens)
        _check_positive_int("log_every", self.log_every)
        if self.num_threads is not None:
            _check_positive_int("num_threads", self.num_threads)
        self.betas = (float(self.betas[0]), float(self.betas[1]))

    @property
    def n_steps(self) -> int:
        return self.total_tokens // self.batch_size

    def encoder_start(self, sae_class: type) -> float:
        """The multiplier of a fresh ``sae_class`` encoder: ``encoder_init_scale``, or the
        architecture's ``encoder_start`` when that is None."""
        if self.encoder_init_scale is not None:
            return float(self.encoder_init_scale)
        return float(sae_class.encoder_start)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
