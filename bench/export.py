"""Benchmark 3: exporting a project of 2,000 images with 25 masks each.

The project is built directly through :class:`samdesk.project.Project`: tiny
640 x 480 PNG files (their size read with ``ensure_image_infos``), 25 mask
layers per image drawn from a pool of random ellipses and rectangles, each
with one of five labels. It is kept in the bench work folder between runs.

- ``export.coco_rle``: ``coco-rle`` export time against ``json.dump`` of the
  same COCO document (the exported file read back as a dict): the floor for
  writing that much JSON. Target 3x.
- ``export.png_instance``: ``png-instance`` export time (no target; the
  ratio is against encoding the same PNGs with OpenCV alone).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from bench.common import Emit, Result, scratch, work_dir

WIDTH, HEIGHT = 640, 480
MASKS_PER_IMAGE = 25
POOL = 200


def _mask_pool(seed: int = 0) -> list[dict]:
    """``POOL`` RLEs of random ellipses and rectangles (some with a hole)."""
    import cv2

    from samdesk import masks

    rng = np.random.default_rng(seed)
    pool = []
    for i in range(POOL):
        canvas = np.zeros((HEIGHT, WIDTH), np.uint8)
        cx, cy = int(rng.integers(40, WIDTH - 40)), int(rng.integers(40, HEIGHT - 40))
        ax, ay = int(rng.integers(10, 120)), int(rng.integers(10, 90))
        if i % 2:
            cv2.ellipse(canvas, (cx, cy), (ax, ay), float(rng.uniform(0, 180)), 0, 360, 1, -1)
        else:
            cv2.rectangle(canvas, (cx - ax, cy - ay), (cx + ax, cy + ay), 1, -1)
        if i % 5 == 0:
            cv2.circle(canvas, (cx, cy), max(2, min(ax, ay) // 3), 0, -1)
        pool.append(masks.encode(canvas))
    return pool


def build_project(folder: Path, images: int) -> Path:
    """A project folder with ``images`` images of 25 masks each (reused when complete)."""
    import cv2

    from samdesk.project import Project

    done = folder / "complete"
    if done.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    ok, png = cv2.imencode(".png", np.zeros((HEIGHT, WIDTH, 3), np.uint8))
    assert ok
    for i in range(images):
        (folder / f"img_{i:05d}.png").write_bytes(png.tobytes())
    pool = _mask_pool()
    rng = np.random.default_rng(1)
    with Project.open(folder) as project:
        labels = [project.add_label(f"class_{k}").id for k in range(5)]
        records = project.images()
        project.ensure_image_infos([r.id for r in records])
        for start in range(0, len(records), 100):
            with project.batch("bench masks"):
                for record in records[start:start + 100]:
                    for k in rng.integers(0, POOL, MASKS_PER_IMAGE):
                        project.add_annotation(record.id, pool[int(k)],
                                               labels[int(k) % len(labels)], score=0.9)
    done.write_text("ok")
    return folder


def _timed_export(folder: Path, fmt: str, out: Path) -> tuple[float, int]:
    from samdesk.export import ExportOptions, export
    from samdesk.project import Project

    with Project.open(folder, scan=False) as project:
        start = time.perf_counter()
        summary = export(project, fmt, ExportOptions(out=out))
        return time.perf_counter() - start, summary.annotations


def _png_floor(count: int, out: Path) -> float:
    """Seconds to encode ``count`` 16-bit 640 x 480 PNGs with OpenCV alone."""
    import cv2

    frame = np.zeros((HEIGHT, WIDTH), np.uint16)
    frame[100:300, 100:400] = 7
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for i in range(count):
        cv2.imwrite(str(out / f"{i}.png"), frame)
    return time.perf_counter() - start


def run(quick: bool, emit: Emit) -> None:
    images = 400 if quick else 2000
    folder = build_project(work_dir() / f"export_project_{images}x{MASKS_PER_IMAGE}", images)
    with scratch("export") as out:
        rle_s, written = _timed_export(folder, "coco-rle", out / "coco.json")
        document = json.loads((out / "coco.json").read_text())
        start = time.perf_counter()
        with open(out / "floor.json", "w") as stream:
            json.dump(document, stream)
        floor_s = time.perf_counter() - start
        size_mb = (out / "coco.json").stat().st_size / 1e6
        emit(Result("export.coco_rle", {
            "images": images, "masks": written, "export_ms": round(1000 * rle_s, 1),
            "json_dump_ms": round(1000 * floor_s, 1), "file_mb": round(size_mb, 1),
        }, rle_s / floor_s, 3.0, "coco-rle export vs json.dump of the same document"))

        png_s, _ = _timed_export(folder, "png-instance", out / "png")
        floor_png = _png_floor(images, out / "png_floor")
        emit(Result("export.png_instance", {
            "images": images, "export_ms": round(1000 * png_s, 1),
            "per_image_ms": round(1000 * png_s / images, 2),
            "opencv_png_ms": round(1000 * floor_png, 1),
        }, png_s / floor_png, None, "png-instance export vs cv2.imwrite of as many PNGs"))
