"""Which device a model runs on: ``device=`` strings, torchrun's local rank, the model's own.

``resolve_device("cuda")`` is ``cuda:LOCAL_RANK`` under ``torchrun`` (each rank its own
GPU, as PyTorch's DDP tutorial sets up) and ``cuda:0`` otherwise; asking for CUDA (or MPS)
on a machine without it is a clear error instead of a crash deep inside a forward pass.
"""

from __future__ import annotations

import os

import torch
from torch import nn

ACCEPTED = "'cpu', 'cuda', 'cuda:N', 'mps' or a torch.device"


def resolve_device(device: str | torch.device | None) -> torch.device | None:
    """The concrete ``torch.device`` for ``device`` (None stays None: "leave it where it is")."""
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device {device!r} is not a device; accepted: {ACCEPTED}") from err
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {str(device)!r} asks for a GPU but torch sees no CUDA device here "
                f"(torch {torch.__version__}); use device='cpu'"
            )
        if dev.index is None:
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        if dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {str(dev)!r} does not exist: this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {str(device)!r}: MPS is not available here; use 'cpu'")
    return dev


def module_device(module: nn.Module) -> torch.device:
    """The device of a module's first parameter (else buffer); CPU for a stateless module."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")
