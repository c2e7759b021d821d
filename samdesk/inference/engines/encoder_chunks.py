"""The SAM and SAM 2 image encoders as :class:`~samdesk.inference.runtimes.Chunk` lists.

The same chunks, in the same order, as the engines' torch ``embed_steps``
(preprocessing excluded: it stays in torch and numpy): patch and position
embedding; each block's attention half, then its MLP half
(:mod:`~samdesk.inference.engines.block_halves`); the neck with the rest of
the forward pass, ending in the :class:`~samdesk.inference.engines.base.Embedding`'s
tensors by name. A runtime exports each chunk from the loaded model.
"""

from __future__ import annotations

from typing import Any

import torch

from samdesk.inference.engines.block_halves import HIERA_HALVES, VIT_HALVES
from samdesk.inference.runtimes.chunks import INPUT, Chunk


def _halves(blocks: Any, halves: tuple, keeps: dict[int, str]) -> list[Chunk]:
    attention, mlp = halves
    chunks = []
    for i, block in enumerate(blocks):
        chunks.append(Chunk(f"block{i:02d}-attention", block, attention))
        chunks.append(Chunk(f"block{i:02d}-mlp", block, mlp, keep=keeps.get(i)))
    return chunks


def sam2_chunks(engine: Any) -> list[Chunk]:
    """A :class:`~samdesk.inference.engines.sam2.Sam2Engine`'s encoder as chunks."""
    model = engine.model
    trunk = model.image_encoder.trunk
    grid = engine.resolution // trunk.patch_embed.proj.stride[0]
    with torch.no_grad():  # the same numbers every call: a constant of the graph
        position = trunk._get_pos_embed((grid, grid)).detach().clone()

    def patch(trunk: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        x = trunk.patch_embed(x)  # (B, H, W, C)
        return x + position

    last = trunk.stage_ends[-1]
    ends = [i for i in range(len(trunk.blocks))
            if i == last or (i in trunk.stage_ends and trunk.return_interm_layers)]
    keeps = {i: f"stage{k}" for k, i in enumerate(ends)}
    levels = model.num_feature_levels
    names = ("image_embed", *(f"high_res_{i}" for i in range(levels - 1)))

    def neck(model: torch.nn.Module, *stages: torch.Tensor) -> tuple[torch.Tensor, ...]:
        features = engine._neck([s.permute(0, 3, 1, 2) for s in stages])[-levels:]
        image_embed = features[-1].float()
        if model.directly_add_no_mem_embed:
            image_embed = image_embed + model.no_mem_embed.float().view(1, -1, 1, 1)
        return (image_embed, *(level.float() for level in features[:-1]))

    return [Chunk("patch", trunk, patch, inputs=(INPUT,)),
            *_halves(trunk.blocks, HIERA_HALVES, keeps),
            Chunk("neck", model, neck, inputs=tuple(keeps[i] for i in ends), outputs=names)]


def sam_chunks(engine: Any) -> list[Chunk]:
    """A :class:`~samdesk.inference.engines.sam.SamEngine`'s encoder as chunks."""
    encoder = engine.model.image_encoder

    def patch(encoder: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        x = encoder.patch_embed(x)
        return x + encoder.pos_embed if encoder.pos_embed is not None else x

    def neck(encoder: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        return encoder.neck(x.permute(0, 3, 1, 2)).float()

    return [Chunk("patch", encoder, patch, inputs=(INPUT,)),
            *_halves(encoder.blocks, VIT_HALVES, {}),
            Chunk("neck", encoder, neck, outputs=("image_embed",))]
