"""The C top-k kernel: the same choice as torch.topk, its NaN rule, threads, and the fallback."""

from __future__ import annotations

import logging
import os
import shutil

import pytest
import torch

from hiddenlens import _native
from hiddenlens.sae import topk_kernel
from hiddenlens.sae.architectures import topk as topk_arch

needs_cc = pytest.mark.skipif(
    (shutil.which("cc") is None and shutil.which("gcc") is None) or not _native.enabled(),
    reason="no C compiler, or HIDDENLENS_NATIVE=0",
)


def _same_choice(score, idx, k):
    assert idx.shape == (score.shape[0], k)
    assert (idx.sort(1).values.diff(dim=1) > 0).all()  # distinct columns in every row
    want = score.topk(k, dim=1).values.sort(1).values
    assert torch.equal(score.gather(1, idx).sort(1).values, want)


@needs_cc
@pytest.mark.parametrize(
    "c,n,k",
    [(64, 6144, 32), (33, 4096, 32), (40, 2048, 5), (7, 1000, 3), (5, 256, 8), (9, 300, 9),
     (3, 7, 1), (4, 512, 16), (6, 6144, 192)],
)  # fmt: skip
def test_kernel_chooses_what_torch_topk_chooses(c, n, k):
    g = torch.Generator().manual_seed(c * n + k)
    score = torch.randn(c, n, generator=g)
    score[:, ::7] -= 3.0  # uneven groups
    score[0, :k] = float("-inf")
    score[-1, -1] = float("inf")
    val, idx = topk_kernel.topk_rows(score, k)
    _same_choice(score, idx, k)
    assert torch.equal(score.gather(1, idx), val)


@needs_cc
def test_kernel_on_ties_strided_rows_and_two_threads():
    g = torch.Generator().manual_seed(1)
    ties = torch.randint(0, 4, (300, 6144), generator=g).float()  # many equal values
    _same_choice(ties, topk_kernel.topk_rows(ties, 32)[1], 32)
    wide = torch.randn(50, 7000, generator=g)
    view = wide[:, 100:6244]  # row stride 7000, not the row length
    _same_choice(view, topk_kernel.topk_rows(view, 32)[1], 32)
    x = torch.randn(1000, 6144, generator=g)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = topk_kernel.topk_rows(x, 32)[1]
        torch.set_num_threads(2)
        two = topk_kernel.topk_rows(x, 32)[1]
    finally:
        torch.set_num_threads(old)
    assert torch.equal(one.sort(1).values, two.sort(1).values)


@needs_cc
def test_a_nan_is_chosen_first_as_torch_does():
    # a NaN pre-activation must reach the loss (and the trainer's NaN guard), not be skipped
    score = torch.randn(4, 1024, generator=torch.Generator().manual_seed(2))
    score[1, [5, 700]] = float("nan")
    score[2, 3] = float("nan")
    idx = topk_kernel.topk_rows(score, 8)[1]
    ref = score.topk(8, dim=1).indices
    for r in range(4):
        assert set(idx[r].tolist()) == set(ref[r].tolist()), r
    assert {5, 700} <= set(idx[1].tolist()) and 3 in idx[2].tolist()


def test_kernel_refuses_what_it_cannot_take():
    with pytest.raises(ValueError, match="float32"):
        topk_kernel.topk_rows(torch.randn(4, 256, dtype=torch.float64), 4)
    with pytest.raises(ValueError, match="k <= 8"):
        topk_kernel.topk_rows(torch.randn(4, 256), 9)  # 256 columns: 8 groups of 32


def test_without_the_kernel_the_torch_path_chooses_the_same(monkeypatch):
    monkeypatch.setattr(topk_kernel, "_kernel", lambda: None)
    assert not topk_kernel.available(torch.randn(2, 6144), 32)
    g = torch.Generator().manual_seed(3)
    for c, n, k in [(64, 6144, 32), (33, 4096, 32), (7, 1000, 3)]:
        score = torch.randn(c, n, generator=g)
        _same_choice(score, topk_arch.topk_indices(score, k), k)


@needs_cc
def test_native_off_by_environment_and_a_failed_build_logs_once(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("HIDDENLENS_NATIVE", "0")
    assert _native.load(tmp_path / "never_read.c") is None
    monkeypatch.delenv("HIDDENLENS_NATIVE")
    bad = tmp_path / "broken.c"
    bad.write_text("this is not C;\n")
    with caplog.at_level(logging.WARNING, logger="hiddenlens._native"):
        assert _native.load(bad) is None
    assert "PyTorch path" in caplog.text and "broken.c" in caplog.text


@needs_cc
def test_a_build_leaves_nothing_on_disk_and_its_dir_is_private(monkeypatch, tmp_path):
    made = []
    real = _native.tempfile.mkdtemp

    def recording(*a, **k):
        made.append(real(*a, **k))
        made.append(oct(os.stat(made[-1]).st_mode & 0o777))
        return made[-2]

    monkeypatch.setattr(_native.tempfile, "mkdtemp", recording)
    src = tmp_path / "ok.c"
    src.write_text("int hl_two(void) { return 2; }\n")
    lib = _native.load(src)
    assert lib is not None and lib.hl_two() == 2  # loaded and callable
    assert made[1] == "0o700" and not os.path.exists(made[0])  # private, then deleted


@needs_cc
def test_a_library_that_builds_but_cannot_load_falls_back(monkeypatch, tmp_path, caplog):
    # a temp dir mounted noexec lets the compiler write the .so but not dlopen it
    def refuse(path, *a, **k):
        raise OSError(f"{path}: failed to map segment from shared object")

    monkeypatch.setattr(_native.ctypes, "CDLL", refuse)
    src = tmp_path / "fine.c"
    src.write_text("int hl_one(void) { return 1; }\n")
    with caplog.at_level(logging.WARNING, logger="hiddenlens._native"):
        assert _native.load(src) is None
    assert "could not be loaded" in caplog.text


@needs_cc
def test_the_bias_is_added_on_the_fly():
    g = torch.Generator().manual_seed(4)
    score, bias = torch.randn(20, 6144 + 70, generator=g), 2 * torch.randn(6144 + 70, generator=g)
    val, idx = topk_kernel.topk_rows(score, 16, bias=bias)
    _same_choice(score + bias, idx, 16)
    torch.testing.assert_close(val, (score + bias).gather(1, idx), rtol=0, atol=1e-6)
    with pytest.raises(ValueError):
        topk_kernel.topk_rows(score, 16, bias=bias[:-1])  # the wrong width
    with pytest.raises(ValueError, match="bias must be"):
        topk_kernel.topk_rows(score, 16, bias=bias.double())


@needs_cc
def test_inference_encode_takes_the_kernel_and_matches_torch(monkeypatch):
    from hiddenlens.sae import SAEConfig, build_sae

    sae = build_sae(SAEConfig(d_in=24, d_sae=512, architecture="topk", k=8), seed=0)
    x = torch.randn(3, 5, 24, generator=torch.Generator().manual_seed(5))  # leading dims kept
    calls = []
    real = topk_kernel.topk_rows
    monkeypatch.setattr(topk_kernel, "topk_rows", lambda *a, **k: calls.append(1) or real(*a, **k))
    with torch.no_grad():
        z = sae.encode(x)
    assert calls and z.shape == (3, 5, 512)
    pre = sae.pre_acts(x)
    v, i = pre.topk(8, dim=-1)
    ref = torch.zeros_like(pre).scatter_(-1, i, torch.relu(v))
    torch.testing.assert_close(z, ref)


def test_without_a_compiler_the_loader_says_so(monkeypatch, caplog):
    monkeypatch.delenv("HIDDENLENS_NATIVE", raising=False)
    monkeypatch.setattr(_native, "_compiler", lambda: None)
    with caplog.at_level(logging.WARNING, logger="hiddenlens._native"):
        assert _native.load(topk_kernel._SOURCE.parent / "nothing_here.c") is None
    assert "no C compiler" in caplog.text and "nothing_here.c" in caplog.text
