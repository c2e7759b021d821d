"""The Segment Anything (SAM, ViT-B/L/H) engine.

The engine uses ``segment_anything``'s modules (image encoder, prompt encoder,
mask decoder, ``postprocess_masks``) with its own pre- and post-processing,
which reproduces ``SamPredictor`` exactly:

- ``embed``: resize the long side to 1024 (PIL bilinear, as the reference),
  normalise, pad to 1024 x 1024, encode to a ``(1, 256, 64, 64)`` embedding.
- ``decode``: prompts in image pixels -> low-resolution logits
  ``(objects, candidates, 256, 256)`` and IoU scores.
- ``upsample``: low-resolution logits -> boolean masks in image pixels.
- ``propose``: ``decode`` without upsampling, as a
  :class:`~samdesk.inference.engines.upsample.Proposal` that upsamples one candidate
  (the one the window shows) when asked: the interactive path.

Upsampling runs the reference's ``F.interpolate`` kernel into reused buffers
(:class:`~samdesk.inference.engines.upsample.MaskUpsampler`), and the prompt
encoder's dense positional encoding is computed once per engine; both give
the reference's numbers bit for bit.

Architectures live in :data:`SAM_ARCHS`, keyed by the registry's
``spec.config`` (``vit_b``, ``vit_l``, ``vit_h``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)

from samdesk.inference.engines.base import Embedding, EngineError, Prompts
from samdesk.inference.engines.block_halves import VIT_HALVES
from samdesk.inference.engines.device import (
    load_weights,
    read_checkpoint,
    resolve_device,
)
from samdesk.inference.engines.sam_common import LowRes, Proposes, check_request, mask_input_tensor
from samdesk.inference.engines.steps import EmbedSteps, encoding, run_to_end
from samdesk.inference.engines.upsample import Frame, MaskUpsampler, Proposal
from samdesk.inference.models.registry import ModelSpec
from samdesk.inference.runtimes import TORCH, Chunk, RuntimeChoice

INPUT_SIZE = 1024
"""Side of the square the encoder sees, in pixels."""
"""Side of the low-resolution logits, in pixels of the 1024 input / 4."""


@dataclass(frozen=True)
class SamArch:
    """The image encoder's shape; prompt encoder and decoder are the same for all."""

    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    window_size: int = 14
    bf16: bool = True
    """Whether the encoder may run under bf16 autocast on CUDA."""


SAM_ARCHS: dict[str, SamArch] = {
    "vit_b": SamArch(768, 12, 12, (2, 5, 8, 11)),
    "vit_l": SamArch(1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": SamArch(1280, 32, 16, (7, 15, 23, 31)),
}


def build_sam(arch: SamArch) -> Sam:
    """A SAM model with ``arch``'s encoder and untrained weights, in eval mode."""
    embed = 256
    grid = INPUT_SIZE // 16
    model = Sam(
        image_encoder=ImageEncoderViT(
            img_size=INPUT_SIZE, patch_size=16, embed_dim=arch.embed_dim, depth=arch.depth,
            num_heads=arch.num_heads, mlp_ratio=4, out_chans=embed, qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_rel_pos=True,
            window_size=arch.window_size, global_attn_indexes=arch.global_attn_indexes,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=embed, image_embedding_size=(grid, grid),
            input_image_size=(INPUT_SIZE, INPUT_SIZE), mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=embed, mlp_dim=2048,
                                          num_heads=8),
            transformer_dim=embed, iou_head_depth=3, iou_head_hidden_dim=256,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return model.eval()


def resized_shape(height: int, width: int, long_side: int = INPUT_SIZE) -> tuple[int, int]:
    """``(h, w)`` of an image scaled so its long side is ``long_side``, rounded half up."""
    scale = long_side / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)



class SamEngine(Proposes, RuntimeChoice):
    """SAM as an :class:`~samdesk.inference.engines.base.Engine`; the encoder runs in
    torch or exported (:mod:`samdesk.inference.runtimes`: ``runtime``, ``runtime_note``)."""

    resolution = INPUT_SIZE

    def __init__(self, model_id: str, model: Sam, device: torch.device, bf16: bool) -> None:
        self.model_id = model_id
        self.model = model
        self.device = device
        self.bf16 = bf16
        self._upsampler = MaskUpsampler()
        self._dense_pe: torch.Tensor | None = None

    def embed(self, rgb: np.ndarray) -> Embedding:
        """Encode an ``(H, W, 3)`` uint8 RGB image.

        Returns tensors ``{"image_embed": float32 (1, 256, 64, 64)}``.
        """
        return run_to_end(self.embed_steps(rgb))

    def embed_steps(self, rgb: np.ndarray) -> EmbedSteps:
        """:meth:`embed` one chunk at a time, yielding between chunks.

        Chunks: preprocessing (resize, normalise, pad); patch and position
        embedding; each block of ``ImageEncoderViT.blocks`` as its attention and
        then its MLP (:mod:`~samdesk.inference.engines.block_halves`); the neck. The
        same ops in the same order as ``ImageEncoderViT.forward``, so the
        embedding is bit-identical. Returns the :class:`Embedding`.
        """
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise EngineError(f"image must be (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
        height, width = rgb.shape[:2]
        encoder = self.model.image_encoder
        with encoding(self.device, self.bf16, autocast=False):
            new_h, new_w = resized_shape(height, width)
            resized = np.array(Image.fromarray(rgb).resize((new_w, new_h), Image.BILINEAR))
            x = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()[None]
            x = self.model.preprocess(x)  # normalise, pad to 1024 x 1024 (float32)
        yield
        tensors = yield from self.runtime_steps(x)  # None: torch runs the encoder
        if tensors is not None:
            return Embedding(self.model_id, (height, width), tensors)
        with encoding(self.device, self.bf16):
            x = encoder.patch_embed(x)
            if encoder.pos_embed is not None:
                x = x + encoder.pos_embed
        yield
        for block in encoder.blocks:
            for half in VIT_HALVES:  # a click waits for half a block at most
                with encoding(self.device, self.bf16):
                    x = half(block, x)
                yield
        with encoding(self.device, self.bf16):
            features = encoder.neck(x.permute(0, 3, 1, 2))
        with encoding(self.device, self.bf16, autocast=False):
            array = features.float().cpu().numpy()
        return Embedding(self.model_id, (height, width), {"image_embed": array})

    def encoder_chunks(self) -> list[Chunk]:
        """The encoder after preprocessing as exportable chunks, as :meth:`embed_steps` runs it."""
        from samdesk.inference.engines.encoder_chunks import sam_chunks

        return sam_chunks(self)

    def propose(
        self,
        embedding: Embedding,
        prompts: Prompts,
        mask_input: np.ndarray | None = None,
        multimask: bool = True,
    ) -> Proposal:
        """Decode ``prompts``; masks are upsampled only as :meth:`Proposal.mask` asks.

        ``proposal.shown()`` is the best candidate per object, pixel for pixel
        what :meth:`predict` returns for it; ``proposal.prediction()`` is
        :meth:`predict`'s whole answer.
        """
        low = self.decode(embedding, prompts, mask_input, multimask)
        logits = low.logits.float().cpu()
        return Proposal(logits, low.scores.float().cpu().numpy(), logits.numpy().copy(),
                        self.frame(embedding.image_size), self._upsampler)

    def frame(self, image_size: tuple[int, int]) -> Frame:
        """How the low-res logits map onto an image of ``(H, W)`` pixels."""
        return Frame(image_size, resized_shape(*image_size), INPUT_SIZE,
                     float(self.model.mask_threshold))

    @torch.inference_mode()
    def decode(
        self,
        embedding: Embedding,
        prompts: Prompts,
        mask_input: np.ndarray | None = None,
        multimask: bool = True,
    ) -> LowRes:
        """Run the prompt encoder and mask decoder; no upsampling.

        ``mask_input``: float32 ``(objects, 256, 256)`` logits of previous
        predictions of the same objects (``(1, 256, 256)`` for one object).
        """
        check_request(embedding, prompts, self.model_id)
        height, width = embedding.image_size
        new_h, new_w = resized_shape(height, width)
        scale = np.array([new_w / width, new_h / height])
        points = None
        if prompts.points:
            xy = np.array([[p.x, p.y] for p in prompts.points], dtype=np.float64) * scale
            labels = np.array([1 if p.positive else 0 for p in prompts.points])
            points = (
                torch.as_tensor(xy, dtype=torch.float, device=self.device)[None],
                torch.as_tensor(labels, dtype=torch.int, device=self.device)[None],
            )
        boxes = None
        if prompts.boxes:
            corners = np.array(prompts.boxes, dtype=np.float64).reshape(-1, 2, 2) * scale
            boxes = torch.as_tensor(corners.reshape(-1, 4), dtype=torch.float, device=self.device)
        masks = mask_input_tensor(mask_input, prompts.object_count, self.device)
        image_embed = torch.as_tensor(embedding.tensors["image_embed"], device=self.device)
        if self._dense_pe is None:  # the same numbers on every call: compute them once
            self._dense_pe = self.model.prompt_encoder.get_dense_pe()
        sparse, dense = self.model.prompt_encoder(points=points, boxes=boxes, masks=masks)
        logits, scores = self.model.mask_decoder(
            image_embeddings=image_embed.float(),
            image_pe=self._dense_pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )
        return LowRes(logits=logits, scores=scores)

    def upsample(self, logits: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """Boolean masks ``(objects, candidates, H, W)`` from low-res ``logits``.

        ``logits``: ``(objects, candidates, 256, 256)``; any subset of the
        candidates may be passed (e.g. only the one on screen). Equal to the
        reference's ``postprocess_masks`` thresholded, pixel for pixel.
        """
        return torch.from_numpy(self._upsampler.masks(logits, self.frame(image_size)))



def load(spec: ModelSpec, checkpoint: Path | None, device: str | torch.device,
         runtime: str = TORCH, progress: Callable[[int, int], None] | None = None
         ) -> SamEngine:
    """Build a SAM engine for ``spec`` from the official state-dict ``checkpoint``.

    ``runtime``: the encoder's (:mod:`samdesk.inference.runtimes`); one that cannot
    start leaves torch running and says why in ``engine.runtime_note``.
    """
    if checkpoint is None:
        raise EngineError(f"{spec.name}: no checkpoint file given")
    arch = SAM_ARCHS.get(spec.config or "")
    if arch is None:
        raise EngineError(f"{spec.name}: unknown SAM architecture {spec.config!r}; "
                          f"known: {', '.join(SAM_ARCHS)}")
    torch_device = resolve_device(device)
    state = read_checkpoint(Path(checkpoint), spec.name)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        raise EngineError(f"{spec.name}: {checkpoint} is not a SAM checkpoint "
                          "(it looks like a SAM 2 file; register it as a SAM 2 model)")
    if not isinstance(state, dict):
        raise EngineError(f"{spec.name}: {checkpoint} is not a SAM checkpoint "
                          f"(holds a {type(state).__name__}, not a state dict)")
    model = build_sam(arch)
    load_weights(model, state, spec.name, Path(checkpoint), "SAM")
    engine = SamEngine(spec.name, model.to(torch_device), torch_device, arch.bf16)
    if runtime != TORCH:
        engine.use_runtime(runtime, Path(checkpoint), "sam", spec.config or "", progress)
    return engine
