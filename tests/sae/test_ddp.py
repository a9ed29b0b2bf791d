"""Data-parallel training (2 CPU processes, gloo) equals one process on the same batches."""

import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from hiddenlens.sae import train
from tests.sae import ddp_worker


def test_two_process_gloo_equals_single_process(tmp_path):
    out = tmp_path / "ddp.safetensors"
    mp.spawn(ddp_worker.worker, args=(2, str(tmp_path / "rdv"), str(out)), nprocs=2, join=True)
    ddp = load_file(str(out))
    single = train(ddp_worker.make_store(), "h", ddp_worker.CFG, ddp_worker.train_cfg())
    for name, p in single.state_dict().items():
        # Same global batches; only the order of floating-point sums differs.
        assert torch.allclose(ddp[name], p, rtol=1e-4, atol=1e-5), name
    assert torch.equal(ddp["density"], single.feature_density_)
