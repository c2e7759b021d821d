"""Encoder transformer blocks run as two chunks: attention, then the MLP.

A chunk of an encode (:mod:`~samdesk.inference.engines.steps`) is what a
click may have to wait for. On a CPU one whole block of SAM 2's Hiera or
SAM's ViT takes 100-330 ms, so a block is split where the library's own
``forward`` has a residual sum: ``x = shortcut + attention(norm1(x))``, then
``x = x + mlp(norm2(x))``. Each half runs exactly the library's operations in
the library's order (``MultiScaleBlock.forward`` of
``sam2/modeling/backbones/hieradet.py``, ``Block.forward`` of
``segment_anything/modeling/image_encoder.py``), so the embedding stays bit
for bit the reference's. Tensors are ``(B, H, W, C)`` as the blocks take them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Half = Callable[[torch.nn.Module, torch.Tensor], torch.Tensor]


def hiera_attention(block: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The first half of a SAM 2 ``MultiScaleBlock``: the (pooled) attention and its residual."""
    from sam2.modeling.backbones.hieradet import do_pool
    from sam2.modeling.backbones.utils import window_partition, window_unpartition

    shortcut = x
    x = block.norm1(x)
    if block.dim != block.dim_out:
        shortcut = do_pool(block.proj(x), block.pool)
    window_size = block.window_size
    if window_size > 0:
        height, width = x.shape[1], x.shape[2]
        x, pad_hw = window_partition(x, window_size)
    x = block.attn(x)
    if block.q_stride:  # the shapes changed with the query pooling
        window_size = block.window_size // block.q_stride[0]
        height, width = shortcut.shape[1:3]
        pad_h = (window_size - height % window_size) % window_size
        pad_w = (window_size - width % window_size) % window_size
        pad_hw = (height + pad_h, width + pad_w)
    if block.window_size > 0:
        x = window_unpartition(x, window_size, pad_hw, (height, width))
    return shortcut + block.drop_path(x)


def hiera_mlp(block: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The second half of a SAM 2 ``MultiScaleBlock``: the MLP and its residual."""
    return x + block.drop_path(block.mlp(block.norm2(x)))


def vit_attention(block: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The first half of a SAM ``Block``: the (windowed) attention and its residual."""
    from segment_anything.modeling.image_encoder import window_partition, window_unpartition

    shortcut = x
    x = block.norm1(x)
    if block.window_size > 0:
        height, width = x.shape[1], x.shape[2]
        x, pad_hw = window_partition(x, block.window_size)
    x = block.attn(x)
    if block.window_size > 0:
        x = window_unpartition(x, block.window_size, pad_hw, (height, width))
    return shortcut + x


def vit_mlp(block: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The second half of a SAM ``Block``: the MLP and its residual."""
    return x + block.mlp(block.norm2(x))


HIERA_HALVES: tuple[Half, Half] = (hiera_attention, hiera_mlp)
VIT_HALVES: tuple[Half, Half] = (vit_attention, vit_mlp)
