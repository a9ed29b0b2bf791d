import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    # Tiny tensors: OpenMP threads only add synchronisation cost on a loaded 2-core box.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
