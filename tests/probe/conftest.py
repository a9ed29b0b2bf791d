import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    # the test machine is shared; one torch thread avoids OpenMP spinning against others
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def planted():
    """Three 'layers': noise, a noisy view of the planted direction, and a clean one."""
    rng = np.random.default_rng(0)
    n, d = 1500, 24
    Z = rng.normal(size=(n, d))
    w = rng.normal(size=d)
    y = (Z @ w > 0).astype(int)
    layers = {
        "noise": rng.normal(size=(n, d)).astype(np.float32),
        "noisy": (Z + 1.0 * rng.normal(size=(n, d))).astype(np.float32),
        "clean": (Z * 3 + 5).astype(np.float32),
    }
    return layers, y, Z @ w
