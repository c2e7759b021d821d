"""The SAM 2 / SAM 2.1 (Hiera tiny, small, base+, large) engine.

Uses the ``sam2`` model's modules (image encoder with its FPN, prompt
encoder, mask decoder) with samdesk's own pre- and post-processing, which
reproduces ``SAM2ImagePredictor`` exactly:

- ``embed``: scale the image to 1024 x 1024 (bilinear, antialiased; aspect is
  not kept), normalise with the ImageNet mean/std, encode to an image
  embedding ``(1, 256, 64, 64)`` plus two high-resolution feature maps.
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

The registry's ``spec.config`` is the hydra config name inside the ``sam2``
package (``configs/sam2.1/sam2.1_hiera_t.yaml``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from hydra.core.global_hydra import GlobalHydra

from samdesk.inference.engines.base import Embedding, EngineError, Prompts
from samdesk.inference.engines.block_halves import HIERA_HALVES
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

"""Side of the low-resolution logits."""
LOGIT_CLAMP = 32.0
"""Returned low-res logits are clamped to +-32, as the reference predictor does."""
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)
_HYDRA_LOCK = threading.Lock()


@contextlib.contextmanager
def sam2_hydra(config: str) -> Iterator[None]:
    """Compose SAM 2 hydra configs (``sam2.build_sam``'s builders) inside this block.

    Hydra's global state is process-wide: the block runs under a lock with
    the ``sam2`` package's config module, and a state another library set up
    is put back afterwards (when none was set up, sam2's own is left in
    place, as ``import sam2`` does). A hydra failure (an unknown ``config``)
    becomes one :class:`EngineError` line.
    """
    from hydra import initialize_config_module
    from hydra.errors import HydraException
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    with _HYDRA_LOCK:
        backup = get_gh_backup()
        previous = GlobalHydra.instance()
        restore = previous.is_initialized()
        previous.clear()
        initialize_config_module("sam2", version_base="1.2")
        try:
            yield
        except HydraException as exc:
            first = str(exc).strip().splitlines()[0]
            raise EngineError(f"SAM 2 config {config!r} cannot be built: {first}") from None
        finally:
            if restore:
                restore_gh_from_backup(backup)


def build_sam2_model(config: str, device: torch.device) -> torch.nn.Module:
    """A SAM 2 model from the hydra ``config`` with untrained weights, in eval mode.

    Uses the same overrides as ``sam2.build_sam.build_sam2`` (dynamic
    multimask fallback), composed under :func:`sam2_hydra`. Raises
    :class:`EngineError` for an unknown config.
    """
    from sam2.build_sam import build_sam2

    with sam2_hydra(config):
        return build_sam2(config, ckpt_path=None, device=str(device), mode="eval")



class Sam2Engine(Proposes, RuntimeChoice):
    """SAM 2 as an :class:`~samdesk.inference.engines.base.Engine`; the encoder runs in
    torch or exported (:mod:`samdesk.inference.runtimes`: ``runtime``, ``runtime_note``)."""

    bf16 = True
    """SAM 2's encoders are trained for bf16 autocast on CUDA."""

    def __init__(self, model_id: str, model: torch.nn.Module, device: torch.device) -> None:
        self.model_id = model_id
        self.model = model
        self.device = device
        self.resolution = int(model.image_size)
        self._upsampler = MaskUpsampler()
        self._dense_pe: torch.Tensor | None = None

    def embed(self, rgb: np.ndarray) -> Embedding:
        """Encode an ``(H, W, 3)`` uint8 RGB image.

        Returns float32 tensors ``image_embed`` ``(1, 256, 64, 64)`` and the
        decoder's high-resolution features ``high_res_0`` ``(1, 32, 256, 256)``
        and ``high_res_1`` ``(1, 64, 128, 128)``.
        """
        return run_to_end(self.embed_steps(rgb))

    def embed_steps(self, rgb: np.ndarray) -> EmbedSteps:
        """:meth:`embed` one chunk at a time, yielding between chunks.

        Chunks: preprocessing (resize, normalise); the Hiera trunk's patch and
        position embedding; each trunk block's attention and then its MLP
        (:mod:`~samdesk.inference.engines.block_halves`; keeping the stage outputs
        ``Hiera.forward`` keeps); the FPN neck with the rest of
        ``SAM2Base.forward_image`` and the decoder-side tensors. The same ops
        in the same order as the library, so the embedding is bit-identical.
        Returns the :class:`Embedding`.
        """
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise EngineError(f"image must be (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
        model = self.model
        with encoding(self.device, self.bf16, autocast=False):
            x = torch.from_numpy(np.ascontiguousarray(rgb)).to(self.device)
            x = x.permute(2, 0, 1).float().div(255)[None]
            size = (self.resolution, self.resolution)
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
            mean = torch.tensor(_MEAN, device=self.device).view(-1, 1, 1)
            std = torch.tensor(_STD, device=self.device).view(-1, 1, 1)
            x = (x - mean) / std
        yield
        tensors = yield from self.runtime_steps(x)  # None: torch runs the encoder
        if tensors is not None:
            return Embedding(self.model_id, (rgb.shape[0], rgb.shape[1]), tensors)
        trunk = model.image_encoder.trunk
        with encoding(self.device, self.bf16):
            x = trunk.patch_embed(x)  # (B, H, W, C)
            x = x + trunk._get_pos_embed(x.shape[1:3])
        yield
        stage_outputs = []
        last = trunk.stage_ends[-1]
        for i, block in enumerate(trunk.blocks):
            for half in HIERA_HALVES:  # a click waits for half a block at most
                with encoding(self.device, self.bf16):
                    x = half(block, x)
                yield
            if i == last or (i in trunk.stage_ends and trunk.return_interm_layers):
                stage_outputs.append(x.permute(0, 3, 1, 2))
        with encoding(self.device, self.bf16):
            levels = self._neck(stage_outputs)
        with encoding(self.device, self.bf16, autocast=False):
            levels = levels[-model.num_feature_levels:]
            image_embed = levels[-1].float()
            if model.directly_add_no_mem_embed:
                image_embed = image_embed + model.no_mem_embed.float().view(1, -1, 1, 1)
            tensors = {"image_embed": image_embed.cpu().numpy()}
            for i, level in enumerate(levels[:-1]):
                tensors[f"high_res_{i}"] = level.float().cpu().numpy()
        return Embedding(self.model_id, (rgb.shape[0], rgb.shape[1]), tensors)

    def encoder_chunks(self) -> list[Chunk]:
        """The encoder after preprocessing as exportable chunks, as :meth:`embed_steps` runs it."""
        from samdesk.inference.engines.encoder_chunks import sam2_chunks

        return sam2_chunks(self)

    def _neck(self, stage_outputs: list[torch.Tensor]) -> list[torch.Tensor]:
        """``ImageEncoder.forward`` after the trunk, then ``forward_image``'s projections.

        Returns the FPN levels, high resolution first (``backbone_fpn``).
        """
        model, encoder = self.model, self.model.image_encoder
        features, _ = encoder.neck(stage_outputs)  # also computes the position encodings
        if encoder.scalp > 0:
            features = features[:-encoder.scalp]
        features = list(features)
        if model.use_high_res_features_in_sam:  # projected once here, not on every click
            features[0] = model.sam_mask_decoder.conv_s0(features[0])
            features[1] = model.sam_mask_decoder.conv_s1(features[1])
        return features

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
        :meth:`predict`'s whole answer (logits clamped to +-32).
        """
        low = self.decode(embedding, prompts, mask_input, multimask)
        raw = low.logits.float().cpu()
        clamped = torch.clamp(raw, -LOGIT_CLAMP, LOGIT_CLAMP).numpy()
        return Proposal(raw, low.scores.float().cpu().numpy(), clamped,
                        self.frame(embedding.image_size), self._upsampler)

    def frame(self, image_size: tuple[int, int]) -> Frame:
        """How the low-res logits map onto an image of ``(H, W)`` pixels (stretched)."""
        return Frame(image_size, None, self.resolution, 0.0)

    @torch.inference_mode()
    def decode(
        self,
        embedding: Embedding,
        prompts: Prompts,
        mask_input: np.ndarray | None = None,
        multimask: bool = True,
    ) -> LowRes:
        """Run the prompt encoder and mask decoder; no upsampling.

        Boxes become two corner points (labels 2 and 3) placed before the
        clicks. ``mask_input``: float32 ``(objects, 256, 256)`` logits of
        previous predictions of the same objects.
        """
        check_request(embedding, prompts, self.model_id)
        height, width = embedding.image_size
        objects = prompts.object_count
        coords: list[torch.Tensor] = []
        labels: list[torch.Tensor] = []
        if prompts.boxes:
            boxes = torch.as_tensor(prompts.boxes, dtype=torch.float, device=self.device)
            coords.append(self._to_input(boxes.reshape(-1, 2, 2), width, height))
            labels.append(torch.tensor([[2, 3]], dtype=torch.int, device=self.device)
                          .repeat(objects, 1))
        if prompts.points:
            xy = torch.as_tensor([[p.x, p.y] for p in prompts.points], dtype=torch.float,
                                 device=self.device)
            coords.append(self._to_input(xy, width, height)[None])
            labels.append(torch.as_tensor([[1 if p.positive else 0 for p in prompts.points]],
                                          dtype=torch.int, device=self.device))
        points = (torch.cat(coords, dim=1), torch.cat(labels, dim=1))
        masks = mask_input_tensor(mask_input, objects, self.device)
        tensors = embedding.tensors
        image_embed = torch.as_tensor(tensors["image_embed"], device=self.device).float()
        high_res = [torch.as_tensor(tensors[f"high_res_{i}"], device=self.device).float()
                    for i in range(self.model.num_feature_levels - 1)]
        if self._dense_pe is None:  # the same numbers on every call: compute them once
            self._dense_pe = self.model.sam_prompt_encoder.get_dense_pe()
        sparse, dense = self.model.sam_prompt_encoder(points=points, boxes=None, masks=masks)
        logits, scores, _, _ = self.model.sam_mask_decoder(
            image_embeddings=image_embed,
            image_pe=self._dense_pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
            repeat_image=objects > 1,
            high_res_features=high_res or None,
        )
        return LowRes(logits=logits, scores=scores)

    def _to_input(self, xy: torch.Tensor, width: int, height: int) -> torch.Tensor:
        """``(..., 2)`` image pixels (x, y) -> pixels of the 1024-square input."""
        xy = xy.clone()
        xy[..., 0] = xy[..., 0] / width
        xy[..., 1] = xy[..., 1] / height
        return xy * self.resolution

    def upsample(self, logits: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """Boolean masks ``(objects, candidates, H, W)`` from low-res ``logits``.

        ``logits``: unclamped ``(objects, candidates, 256, 256)``; any subset
        of the candidates may be passed (e.g. only the one on screen). Equal to
        the reference's ``F.interpolate`` thresholded, pixel for pixel.
        """
        return torch.from_numpy(self._upsampler.masks(logits, self.frame(image_size)))



def load(spec: ModelSpec, checkpoint: Path | None, device: str | torch.device,
         runtime: str = TORCH, progress: Callable[[int, int], None] | None = None
         ) -> Sam2Engine:
    """Build a SAM 2 engine for ``spec`` from the official ``{"model": state}`` file.

    ``runtime``: the encoder's (:mod:`samdesk.inference.runtimes`); one that cannot
    start leaves torch running and says why in ``engine.runtime_note``.
    """
    if checkpoint is None:
        raise EngineError(f"{spec.name}: no checkpoint file given")
    if not spec.config:
        raise EngineError(f"{spec.name}: no SAM 2 config named in the model registry")
    torch_device = resolve_device(device)
    path = Path(checkpoint)
    state = read_sam2_state(spec, path)
    model = build_sam2_model(spec.config, torch.device("cpu"))
    load_weights(model, state, spec.name, path, "SAM 2")
    engine = Sam2Engine(spec.name, model.to(torch_device), torch_device)
    if runtime != TORCH:
        engine.use_runtime(runtime, path, "sam2", spec.config, progress)
    return engine


def read_sam2_state(spec: ModelSpec, path: Path) -> dict:
    """The ``model`` state dict of an official SAM 2 file, or one EngineError line."""
    content = read_checkpoint(path, spec.name)
    if not isinstance(content, dict) or not isinstance(content.get("model"), dict):
        hint = ""
        if isinstance(content, dict) and "image_encoder.patch_embed.proj.weight" in content:
            hint = "; it looks like a SAM (v1) file"
        raise EngineError(f"{spec.name}: {path} is not a SAM 2 checkpoint "
                          f"(no 'model' state dict{hint})")
    return content["model"]
