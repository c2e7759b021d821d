"""``samdesk segment`` and ``samdesk embed``: one image, headless, on the engines' code.

Points and boxes are in pixels of the upright image (EXIF orientation
applied), the frame every samdesk mask is in. Without ``--format`` the
output's extension chooses it (:data:`FORMAT_BY_SUFFIX`). On a terminal the
model load and the encode show live lines on stderr
(:class:`~samdesk.commands.progress.Steps`).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from samdesk.commands.progress import Steps
from samdesk.errors import SamdeskError


class UsageError(SamdeskError):
    """A command-line argument is wrong; the message names it."""


# Best first: the default mask model is the best one installed, GrabCut otherwise.
SEGMENTER_PREFERENCE = (
    "sam2.1_hiera_large", "sam2.1_hiera_base_plus", "sam2.1_hiera_small", "sam2.1_hiera_tiny",
    "sam2_hiera_large", "sam2_hiera_base_plus", "sam2_hiera_small", "sam2_hiera_tiny",
    "sam_vit_h", "sam_vit_l", "sam_vit_b",
)


FORMAT_BY_SUFFIX = {".json": "json", ".png": "png", ".jpg": "overlay", ".jpeg": "overlay"}
"""The ``--format`` an ``--out`` file name implies when ``--format`` is not given."""


def default_segmenter() -> str:
    """The best installed mask model, or ``grabcut`` when no checkpoint is installed."""
    from samdesk.inference.models import checkpoints

    return next((n for n in SEGMENTER_PREFERENCE if checkpoints.installed(n)), "grabcut")


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="model name (samdesk models list); default: the best "
                        "installed, else grabcut")
    parser.add_argument("--checkpoint", type=Path, help="checkpoint file for --model")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "gpu", "mps"))
    add_runtime_arg(parser)
    parser.add_argument("--server", metavar="URL", help="run --model (and --detector) on a "
                        "`samdesk serve` at URL; the image file is sent once")
    parser.add_argument("--api-key", metavar="KEY", default=os.environ.get("SAMDESK_API_KEY"),
                        help="the server's API key (default: $SAMDESK_API_KEY)")


def add_runtime_arg(parser: argparse.ArgumentParser) -> None:
    """``--runtime auto|torch|onnx|onnx-int8`` (checked when the model loads: one line)."""
    parser.add_argument("--runtime", metavar="NAME", default=None,
                        help="the encoder's runtime: auto (default; on a CPU ONNX fp32 where "
                        "it matched torch on this checkpoint, else torch), torch, onnx, "
                        "onnx-int8 (faster, masks move a little)")


def load_with_runtime(args: argparse.Namespace, name: str, checkpoint: Path | None,
                      steps: Steps | None = None) -> Any:
    """Model ``name`` loaded with ``--runtime`` as a step; then the runtime it runs (and
    why, when not the one asked for) said once on stderr."""
    import sys

    from samdesk.inference.engines import runtime_choice

    with (steps or Steps()).step(f"loading {name}"):
        engine = runtime_choice.load_engine(name, checkpoint, args.device,
                                            getattr(args, "runtime", None))
    line = runtime_choice.runtime_line(name, engine)
    if line:
        print(line, file=sys.stderr)
    return engine


def server_model(args: argparse.Namespace, kind: str, name: str | None) -> str:
    """``server:URL#MODEL`` for ``--server``: ``name``, else the best the server serves
    of ``kind`` (segmenter: :data:`SEGMENTER_PREFERENCE` order; else its first)."""
    from samdesk.inference.engines import remote
    from samdesk.inference.models.registry import parse_remote_name, remote_name

    url = args.server.strip().rstrip("/")
    try:
        parse_remote_name(remote_name(url, "x"))
    except SamdeskError:
        raise UsageError(f"--server {args.server}: give an http:// or https:// URL") from None
    if args.checkpoint is not None or getattr(args, "detector_checkpoint", None) is not None:
        raise UsageError("--server runs the server's own checkpoints; leave out --checkpoint")
    remote.set_api_key(url, args.api_key)
    if name is None:
        served = [m for m in remote.Connection(url).models() if m.get("kind") == kind]
        names = [str(m["name"]) for m in served]
        best = [n for n in SEGMENTER_PREFERENCE if n in names] if kind == "segmenter" else []
        if not names:
            raise UsageError(f"--server {url}: it serves no {kind}")
        name = (best or names)[0]
    return remote_name(url, name)


class OnFile:
    """A server's engine or detector handed the image file, not its decoded pixels, so
    the file's bytes go to the server once (``embed_file`` / ``detect_file``)."""

    def __init__(self, inner: Any, path: Path) -> None:
        self.inner, self.path, self.model_id = inner, path, inner.model_id

    def embed(self, rgb: np.ndarray) -> Any:
        return self.inner.embed_file(self.path)

    def detect(self, rgb: np.ndarray, text: str, box_threshold: float = 0.3,
               text_threshold: float = 0.25) -> Any:
        return self.inner.detect_file(self.path, None, text, box_threshold, text_threshold)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def on_file(model: Any, path: Path) -> Any:
    """``model`` wrapped in :class:`OnFile` when it is a server's, else ``model``."""
    if hasattr(model, "embed_file") or hasattr(model, "detect_file"):
        return OnFile(model, path)
    return model


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
    seg.add_argument("--format", choices=("json", "png", "overlay"),
                     help="default: from the --out extension (.json json, .png png, "
                     ".jpg/.jpeg overlay)")
    seg.add_argument("--out", required=True, type=Path,
                     help="output file; png writes OUT-0.png, OUT-1.png... for several masks")
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
    from samdesk.inference.engines.base import Point, Prompts

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


def output_format(args: argparse.Namespace) -> str:
    """The format to write: ``--format``, or the one ``--out``'s extension implies.

    Checked before any model is loaded: an extension that implies no format,
    or an overlay file name no image writer knows, is a :class:`UsageError`.
    """
    out: Path = args.out
    suffix = out.suffix.lower()
    fmt = args.format or FORMAT_BY_SUFFIX.get(suffix)
    if fmt is None:
        raise UsageError(f"--out {out}: unknown extension {suffix or '(none)'!r}; use .json, "
                         f".png, .jpg or .jpeg, or say which with --format")
    if fmt == "overlay":
        from PIL import Image

        if Image.registered_extensions().get(suffix) not in Image.SAVE:
            raise UsageError(f"--out {out}: an overlay is an image; name it .png, .jpg or .jpeg")
    return fmt


def load_engine(args: argparse.Namespace, steps: Steps | None = None) -> Any:
    """The ``--model`` engine (default: :func:`default_segmenter`), loaded as a step."""
    if args.checkpoint is not None and args.model is None:
        raise UsageError("--checkpoint needs --model to say which architecture it is")
    if args.checkpoint is not None and not args.checkpoint.is_file():
        raise UsageError(f"--checkpoint {args.checkpoint}: no such file")
    if getattr(args, "server", None):
        name = server_model(args, "segmenter", args.model)
    else:
        name = args.model or default_segmenter()
    return load_with_runtime(args, name, args.checkpoint, steps)


def embed_image(engine: Any, rgb: np.ndarray, what: str, steps: Steps | None = None) -> Any:
    """``engine.embed(rgb)`` as a step named ``what``, ticking between encoder blocks."""
    with (steps or Steps()).step(what) as tick:
        chunks = getattr(engine, "embed_steps", None)
        if chunks is None:
            return engine.embed(rgb)
        running = chunks(rgb)
        while True:
            try:
                next(running)
            except StopIteration as done:
                return done.value
            tick()


def mask_entries(masks: np.ndarray, scores: np.ndarray, labels: list[str | None],
                 single: bool) -> list[dict[str, Any]]:
    """JSON entries for ``masks`` (objects, candidates, H, W), best first.

    An object's candidates that repeat one of its better masks are left out
    (:func:`~samdesk.inference.worker.results.distinct_candidates`).
    """
    from samdesk import masks as rle
    from samdesk.inference.worker.results import distinct_candidates

    entries = []
    for obj in range(masks.shape[0]):
        kept = distinct_candidates(masks[obj], scores[obj])
        order = sorted(kept, key=lambda c: -scores[obj, c])
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
    fmt = output_format(args)
    rgb = images.load_rgb(args.image)
    height, width = rgb.shape[:2]
    steps = Steps()
    detector = _load_detector(args, steps) if args.text else None
    prompts = None if args.text else build_prompts(args, width, height)
    engine = on_file(load_engine(args, steps), args.image)
    embedding = embed_image(engine, rgb, f"encoding {args.image.name}", steps)
    if detector is not None:
        detector = on_file(detector, args.image)
        masks, scores, labels = _segment_text(args, detector, engine, rgb, embedding)
    else:
        prediction = engine.predict(embedding, prompts, multimask=not args.single)
        masks, scores = prediction.masks, prediction.scores
        labels = [None] * masks.shape[0]
    entries = mask_entries(masks, scores, labels, args.single)
    for line in _write_output(args, fmt, rgb, entries):
        print(line)
    return 0


def _load_detector(args: argparse.Namespace, steps: Steps) -> Any:
    from samdesk.inference.engines import loading, packages
    from samdesk.inference.models import checkpoints, registry

    if args.points or args.negative or args.box:
        raise UsageError("--text cannot be combined with --points, --negative or --box")
    if not args.text.strip():
        raise UsageError("--text is empty: name the objects, e.g. \"car . person\"")
    if args.server:  # the server's detector: no local package needed
        name, path = server_model(args, "detector", args.detector), None
        with steps.step(f"loading {name}"):
            return loading.load_model(name, path, args.device)
    # the text extra missing is said before a missing checkpoint (no 700 MB fetch first)
    packages.require(registry.get_spec(args.detector or checkpoints.DEFAULT_DETECTOR).family)
    if args.detector_checkpoint is not None:
        name, path = args.detector or checkpoints.DEFAULT_DETECTOR, args.detector_checkpoint
    else:
        spec, path = checkpoints.resolve_detector(args.detector)
        name = spec.name
    with steps.step(f"loading {name}"):
        return loading.load_model(name, path, args.device)


def _segment_text(args: argparse.Namespace, detector: Any, engine: Any, rgb: np.ndarray,
                  embedding: Any) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
    from samdesk.inference.engines.text import segment_text

    found = segment_text(detector, engine, rgb, args.text, args.threshold,
                         args.text_threshold, embedding=embedding)
    height, width = rgb.shape[:2]
    if not found:
        return np.zeros((0, 1, height, width), bool), np.zeros((0, 1), np.float32), []
    masks = np.stack([obj.mask for obj in found])[:, None]
    scores = np.array([[obj.mask_score] for obj in found], np.float32)
    return masks, scores, [obj.phrase for obj in found]


def _write_output(args: argparse.Namespace, fmt: str, rgb: np.ndarray,
                  entries: list[dict]) -> list[str]:
    """Write ``entries`` as ``fmt``; one line per file written, naming it."""
    from samdesk import masks as rle
    from samdesk import overlay as render

    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "json":
        height, width = rgb.shape[:2]
        doc = {"image": {"file": str(args.image), "width": width, "height": height},
               "masks": [{k: v for k, v in e.items() if k != "object"} for e in entries]}
        out.write_text(json.dumps(doc, indent=1), encoding="utf-8")
        return [f"{out}: {len(entries)} masks"]
    if fmt == "png":
        decoded = [rle.decode(e["segmentation"]) for e in entries]
        written = render.write_mask_pngs(out, decoded)
        return [f"{path}: mask of object {e['object']}, score {e['score']:.3f}, "
                f"{e['area']} pixels" for path, e in zip(written, entries, strict=True)]
    best: dict[int, np.ndarray] = {}
    for entry in entries:  # best first, so the first per object is its best
        best.setdefault(entry["object"], rle.decode(entry["segmentation"]))
    render.write_overlay(out, rgb, list(best.values()))
    return [f"{out}: overlay of {len(best)} masks"]


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
    if not args.server and (args.model or default_segmenter()) == "grabcut":
        raise UsageError("grabcut has no embedding; choose a SAM or SAM 2 --model")
    rgb = images.load_rgb(args.image)
    steps = Steps()
    engine = on_file(load_engine(args, steps), args.image)
    embedding = embed_image(engine, rgb, f"encoding {args.image.name}", steps)
    tensors = embedding.tensors
    if hasattr(engine, "embedding_tensors"):  # a server's: it holds the tensors
        tensors = engine.embedding_tensors(embedding)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.out.suffix == ".npz":
        np.savez(args.out, **tensors)
    else:
        np.save(args.out, main_tensor(tensors))
    shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in tensors.items())
    print(f"{args.out}: {embedding.model_id} embedding of {args.image} ({shapes})")
    return 0
