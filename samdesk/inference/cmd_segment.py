"""``samdesk segment`` and ``samdesk embed``: one image, headless, on the engines' code.

Points and boxes are in pixels of the upright image (EXIF orientation
applied), the frame every samdesk mask is in.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from samdesk.errors import SamdeskError


class UsageError(SamdeskError):
    """A command-line argument is wrong; the message names it."""


# Best first: the default mask model is the best one installed, GrabCut otherwise.
SEGMENTER_PREFERENCE = (
    "sam2.1_hiera_large", "sam2.1_hiera_base_plus", "sam2.1_hiera_small", "sam2.1_hiera_tiny",
    "sam2_hiera_large", "sam2_hiera_base_plus", "sam2_hiera_small", "sam2_hiera_tiny",
    "sam_vit_h", "sam_vit_l", "sam_vit_b",
)


def default_segmenter() -> str:
    """The best installed mask model, or ``grabcut`` when no checkpoint is installed."""
    from samdesk.inference import models

    return next((n for n in SEGMENTER_PREFERENCE if models.installed(n)), "grabcut")


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="model name (samdesk models list); default: the best "
                        "installed, else grabcut")
    parser.add_argument("--checkpoint", type=Path, help="checkpoint file for --model")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "gpu", "mps"))


def register(sub: Any) -> None:
    seg = sub.add_parser("segment", help="segment one image from points, boxes or a phrase")
    seg.add_argument("image", type=Path)
    seg.add_argument("--points", nargs="+", action="extend", default=[], metavar="X,Y",
                     help="positive clicks")
    seg.add_argument("--negative", nargs="+", action="extend", default=[], metavar="X,Y",
                     help="negative (background) clicks")
    seg.add_argument("--box", nargs="+", action="extend", default=[], metavar="X0,Y0,X1,Y1",
                     help="boxes; several boxes are several objects")
    seg.add_argument("--text", help='objects to find, e.g. "car . person" (GroundingDINO)')
    seg.add_argument("--threshold", type=float, default=0.3, help="box threshold for --text")
    seg.add_argument("--text-threshold", type=float, default=0.25)
    seg.add_argument("--detector", help="GroundingDINO model name for --text")
    seg.add_argument("--detector-checkpoint", type=Path)
    _add_model_args(seg)
    seg.add_argument("--single", action="store_true", help="only the best mask per object")
    seg.add_argument("--format", default="json", choices=("json", "png", "overlay"))
    seg.add_argument("--out", required=True, type=Path)
    seg.set_defaults(func=run_segment)

    emb = sub.add_parser("embed", help="compute a model's image embedding and save it")
    emb.add_argument("image", type=Path)
    _add_model_args(emb)
    emb.add_argument("--out", required=True, type=Path,
                     help=".npy (the main embedding) or .npz (every tensor)")
    emb.set_defaults(func=run_embed)


def parse_xy(text: str, flag: str, count: int) -> tuple[float, ...]:
    """``"10,20"`` → ``(10.0, 20.0)``; a clear error naming ``flag`` otherwise."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != count or not all(np.isfinite(values)):
        shape = "X,Y" if count == 2 else "X0,Y0,X1,Y1"
        raise UsageError(f"{flag} {text!r}: expected {shape} numbers")
    return values


def _check_inside(values: tuple[float, ...], flag: str, text: str, width: int,
                  height: int) -> None:
    xs, ys = values[0::2], values[1::2]
    if min(xs) < 0 or min(ys) < 0 or max(xs) > width or max(ys) > height:
        raise UsageError(f"{flag} {text}: outside the {width}x{height} image")


def build_prompts(args: argparse.Namespace, width: int, height: int) -> Any:
    from samdesk.inference.base import Point, Prompts

    points = []
    for flag, items, positive in (("--points", args.points, True),
                                  ("--negative", args.negative, False)):
        for text in items:
            x, y = parse_xy(text, flag, 2)
            _check_inside((x, y), flag, text, width, height)
            points.append(Point(x, y, positive))
    boxes = []
    for text in args.box:
        box = parse_xy(text, "--box", 4)
        _check_inside(box, "--box", text, width, height)
        if not (box[2] > box[0] and box[3] > box[1]):
            raise UsageError(f"--box {text}: needs X1 > X0 and Y1 > Y0")
        boxes.append(box)
    if len(boxes) > 1 and points:
        raise UsageError("--points/--negative cannot be combined with several --box")
    return Prompts(points=tuple(points), boxes=tuple(boxes))


def load_engine(args: argparse.Namespace) -> Any:
    from samdesk.inference import registry

    if args.checkpoint is not None and args.model is None:
        raise UsageError("--checkpoint needs --model to say which architecture it is")
    if args.checkpoint is not None and not args.checkpoint.is_file():
        raise UsageError(f"--checkpoint {args.checkpoint}: no such file")
    name = args.model or default_segmenter()
    return registry.load_model(name, args.checkpoint, args.device)


def mask_entries(masks: np.ndarray, scores: np.ndarray, labels: list[str | None],
                 single: bool) -> list[dict[str, Any]]:
    """JSON entries for ``masks`` (objects, candidates, H, W), best first."""
    from samdesk import masks as rle

    entries = []
    for obj in range(masks.shape[0]):
        order = np.argsort(-scores[obj])
        for cand in order[:1] if single else order:
            encoded = rle.encode(masks[obj, cand])
            entries.append({"segmentation": encoded, "score": float(scores[obj, cand]),
                            "area": rle.area(encoded), "bbox": rle.bbox(encoded),
                            "label": labels[obj], "object": obj})
    entries.sort(key=lambda e: -e["score"])
    return entries


def run_segment(args: argparse.Namespace) -> int:
    from samdesk import images

    if not (args.points or args.negative or args.box or args.text):
        raise UsageError("give --points, --negative, --box or --text")
    rgb = images.load_rgb(args.image)
    height, width = rgb.shape[:2]
    detector = _load_detector(args) if args.text else None
    prompts = None if args.text else build_prompts(args, width, height)
    engine = load_engine(args)
    embedding = engine.embed(rgb)
    if detector is not None:
        masks, scores, labels = _segment_text(args, detector, engine, rgb, embedding)
    else:
        prediction = engine.predict(embedding, prompts, multimask=not args.single)
        masks, scores = prediction.masks, prediction.scores
        labels = [None] * masks.shape[0]
    entries = mask_entries(masks, scores, labels, args.single)
    _write_output(args, rgb, entries)
    print(f"{args.out}: {len(entries)} masks")
    return 0


def _load_detector(args: argparse.Namespace) -> Any:
    from samdesk.inference import models, registry

    if args.points or args.negative or args.box:
        raise UsageError("--text cannot be combined with --points, --negative or --box")
    if not args.text.strip():
        raise UsageError("--text is empty: name the objects, e.g. \"car . person\"")
    if args.detector_checkpoint is not None:
        return registry.load_model(args.detector or models.DEFAULT_DETECTOR,
                                   args.detector_checkpoint, args.device)
    spec, path = models.resolve_detector(args.detector)
    return registry.load_model(spec.name, path, args.device)


def _segment_text(args: argparse.Namespace, detector: Any, engine: Any, rgb: np.ndarray,
                  embedding: Any) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
    from samdesk.inference.text import segment_text

    found = segment_text(detector, engine, rgb, args.text, args.threshold,
                         args.text_threshold, embedding=embedding)
    height, width = rgb.shape[:2]
    if not found:
        return np.zeros((0, 1, height, width), bool), np.zeros((0, 1), np.float32), []
    masks = np.stack([obj.mask for obj in found])[:, None]
    scores = np.array([[obj.mask_score] for obj in found], np.float32)
    return masks, scores, [obj.phrase for obj in found]


def _write_output(args: argparse.Namespace, rgb: np.ndarray, entries: list[dict]) -> None:
    from samdesk import masks as rle
    from samdesk import overlay as render

    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.format == "json":
        height, width = rgb.shape[:2]
        doc = {"image": {"file": str(args.image), "width": width, "height": height},
               "masks": [{k: v for k, v in e.items() if k != "object"} for e in entries]}
        out.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    elif args.format == "png":
        decoded = [rle.decode(e["segmentation"]) for e in entries]
        render.write_mask_pngs(out, decoded)
    else:
        best: dict[int, np.ndarray] = {}
        for entry in entries:  # best first, so the first per object is its best
            best.setdefault(entry["object"], rle.decode(entry["segmentation"]))
        render.write_overlay(out, rgb, list(best.values()))


def main_tensor(tensors: dict[str, np.ndarray]) -> np.ndarray:
    """The image embedding proper (256 channels at 64×64 for SAM and SAM 2)."""
    feature_maps = [a for a in tensors.values() if a.ndim == 4]
    if not feature_maps:
        raise UsageError("this model's embedding has no feature map to save as .npy; use .npz")
    return max(feature_maps, key=lambda a: a.shape[1])


def run_embed(args: argparse.Namespace) -> int:
    from samdesk import images

    if args.out.suffix not in (".npy", ".npz"):
        raise UsageError(f"--out {args.out}: use a .npy or .npz file name")
    if (args.model or default_segmenter()) == "grabcut":
        raise UsageError("grabcut has no embedding; choose a SAM or SAM 2 --model")
    rgb = images.load_rgb(args.image)
    embedding = load_engine(args).embed(rgb)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.out.suffix == ".npz":
        np.savez(args.out, **embedding.tensors)
    else:
        np.save(args.out, main_tensor(embedding.tensors))
    shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in embedding.tensors.items())
    print(f"{args.out}: {embedding.model_id} embedding of {args.image} ({shapes})")
    return 0
