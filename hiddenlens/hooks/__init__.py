"""Attach to any model: hook-point names, capture, patch, attach, model loading, rows."""

from hiddenlens.hooks.attachment import Attachment, attach
from hiddenlens.hooks.capture import Capture, StopForward, capture, patch
from hiddenlens.hooks.device import resolve_device
from hiddenlens.hooks.model import KINDS, ModelHandle, load_model, pool_embeddings
from hiddenlens.hooks.names import hook_points, parse_hook_spec, resolve_hook_points
from hiddenlens.hooks.rows import GRAD_SUFFIX, RowBatch, iter_row_batches
from hiddenlens.hooks.tl import save_hooked_transformer

__all__ = [
    "GRAD_SUFFIX",
    "KINDS",
    "Attachment",
    "Capture",
    "ModelHandle",
    "RowBatch",
    "StopForward",
    "attach",
    "capture",
    "hook_points",
    "iter_row_batches",
    "load_model",
    "parse_hook_spec",
    "patch",
    "pool_embeddings",
    "resolve_device",
    "resolve_hook_points",
    "save_hooked_transformer",
]
