"""Attach to any model: hook-point names, capture, patch, model loading, row extraction."""

from hiddenlens.hooks.capture import Capture, StopForward, capture, patch
from hiddenlens.hooks.model import ModelHandle, load_model, pool_embeddings
from hiddenlens.hooks.names import hook_points, parse_hook_spec, resolve_hook_points
from hiddenlens.hooks.rows import GRAD_SUFFIX, RowBatch, iter_row_batches

__all__ = [
    "GRAD_SUFFIX",
    "Capture",
    "ModelHandle",
    "RowBatch",
    "StopForward",
    "capture",
    "hook_points",
    "iter_row_batches",
    "load_model",
    "parse_hook_spec",
    "patch",
    "pool_embeddings",
    "resolve_hook_points",
]
