"""Shared layers whose fast paths must compute exactly what the plain PyTorch layer computes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lib.nets import fast_layers as layers
from lib.nets.fast_layers import GemmConv2d, GemmConvTranspose2d


def _pair(plain: nn.Module, fast: nn.Module) -> tuple[nn.Module, nn.Module]:
    fast.load_state_dict(plain.state_dict())  # same parameters, same state-dict keys
    return plain.double(), fast.double()


@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda cls: cls(6, 5, 4, stride=2, padding=1), (3, 6, 4, 4)),  # the VAE's 4x4 -> 2x2 layer
        (lambda cls: cls(6, 5, 3, stride=1, padding=0, bias=False), (2, 6, 4, 3)),  # 2x1 output, no bias
        (lambda cls: cls(6, 5, 4, stride=2, padding=1), (2, 6, 8, 8)),  # 4x4 output: the oneDNN path
    ],
)
def test_gemm_conv_matches_conv2d_values_and_gradients(make, shape):
    torch.manual_seed(0)
    plain, fast = _pair(make(nn.Conv2d), make(GemmConv2d))
    _check_same(plain, fast, torch.randn(*shape, dtype=torch.double))


@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda cls: cls(6, 5, 4, stride=2, padding=1), (3, 6, 2, 2)),  # the decoder's 2x2 -> 4x4 layer
        (lambda cls: cls(6, 5, 3, stride=1, padding=1, bias=False), (2, 6, 1, 3)),
        (lambda cls: cls(6, 5, 4, stride=2, padding=1), (2, 6, 4, 4)),  # 16 input pixels: the oneDNN path
    ],
)
def test_gemm_conv_transpose_matches_conv_transpose2d(make, shape):
    torch.manual_seed(0)
    plain, fast = _pair(make(nn.ConvTranspose2d), make(GemmConvTranspose2d))
    _check_same(plain, fast, torch.randn(*shape, dtype=torch.double))


def _check_same(plain: nn.Module, fast: nn.Module, x: torch.Tensor) -> None:
    xs = [x.clone().requires_grad_() for _ in range(2)]
    outs = [m(xi) for m, xi in zip((plain, fast), xs)]
    assert outs[0].shape == outs[1].shape
    torch.testing.assert_close(outs[1], outs[0])
    weight = torch.randn_like(outs[0])
    for out in outs:
        (out * weight).sum().backward()
    torch.testing.assert_close(xs[1].grad, xs[0].grad)
    for (name, p), q in zip(plain.named_parameters(), fast.parameters()):
        torch.testing.assert_close(q.grad, p.grad, msg=name)


def test_gemm_path_is_taken_only_for_small_maps_on_the_cpu(monkeypatch):
    """The matrix-product path runs (F.unfold is called) for a 2x2 output, not for a 4x4 one."""
    calls = []
    unfold = layers.F.unfold
    monkeypatch.setattr(layers.F, "unfold", lambda *a, **k: calls.append(1) or unfold(*a, **k))
    conv = GemmConv2d(4, 4, 4, stride=2, padding=1)
    conv(torch.randn(1, 4, 4, 4))
    assert calls == [1]
    conv(torch.randn(1, 4, 8, 8))
    assert calls == [1]


def test_gemm_conv_transpose_keeps_the_bf16_dtype_of_autocast():
    conv = GemmConvTranspose2d(8, 4, 4, stride=2, padding=1)
    x = torch.randn(2, 8, 2, 2)
    with torch.autocast("cpu", torch.bfloat16):
        fast, plain = conv(x), nn.ConvTranspose2d.forward(conv, x)
    assert fast.dtype == plain.dtype == torch.bfloat16
    torch.testing.assert_close(fast.float(), plain.float(), atol=0.05, rtol=0.02)


def test_the_channels_last_max_pool_is_the_plain_max_pool_in_the_inputs_layout():
    x = torch.randn(2, 8, 16, 16, requires_grad=True)
    pooled = layers.max_pool_5x5(x)
    assert torch.equal(pooled, F.max_pool2d(x, 5, stride=1, padding=2)) and pooled.is_contiguous()
    pooled.sum().backward()
    assert torch.equal(x.grad, torch.autograd.grad(F.max_pool2d(x, 5, 1, 2).sum(), x)[0])
