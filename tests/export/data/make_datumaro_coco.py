"""Writes ``datumaro_coco/`` with datumaro's own code (not run by the tests).

Written by datumaro 1.13.12. Run with datumaro importable, in an environment
of its own (``python3 -m venv /tmp/dm_venv && /tmp/dm_venv/bin/pip install
datumaro``): ``/tmp/dm_venv/bin/python tests/export/data/make_datumaro_coco.py``.
The two images (``a.png`` 64x48, ``b.png`` 40x30, black) are written beside
the annotations; the dataset is built with datumaro's ``Dataset.from_iterable``
(a ``Mask`` with a hole, ``Polygon``s, a ``Bbox``) and saved with its
``coco_instances`` exporter (default options: segmentation mode "guess", so a
``Mask`` is written as uncompressed RLE with ``iscrowd`` 1, a ``Polygon`` as a
polygon, a lone ``Bbox`` with ``segmentation`` ``[]``). The exporter's
``annotations/instances_default.json`` is kept as ``instances.json``.
test_import_datumaro.py imports it and checks the pixels drawn here.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import datumaro as dm
import numpy as np
from PIL import Image

HERE = Path(__file__).parent / "datumaro_coco"


def ring() -> np.ndarray:
    """The mask of image a: a 20x14 block at (30, 10) with a 8x4 hole at (36, 15)."""
    mask = np.zeros((48, 64), dtype=np.uint8)
    mask[10:24, 30:50] = 1
    mask[15:19, 36:44] = 0
    return mask


def corner() -> np.ndarray:
    """A mask of image b that starts at pixel (0, 0): its RLE begins with a 0 run."""
    mask = np.zeros((30, 40), dtype=np.uint8)
    mask[0:5, 0:7] = 1
    return mask


def main() -> None:
    HERE.mkdir(parents=True, exist_ok=True)
    for name, (width, height) in {"a.png": (64, 48), "b.png": (40, 30)}.items():
        Image.fromarray(np.zeros((height, width, 3), dtype=np.uint8)).save(HERE / name)
    labels = ["dog", "traffic cone", "car"]  # ids 1, 2, 3 in the file
    items = [
        dm.DatasetItem(id="a", media=dm.Image.from_file(path=str(HERE / "a.png")), annotations=[
            dm.Mask(image=ring(), label=0, id=1),
            dm.Polygon([4, 4, 20, 4, 20, 16, 4, 16], label=0, id=2),  # second dog
            dm.Polygon([40, 30, 60, 30, 50, 44], label=1, id=3),
            dm.Bbox(5, 25, 12.5, 10, label=2, id=4),  # x, y, width, height: box only
        ]),
        dm.DatasetItem(id="b", media=dm.Image.from_file(path=str(HERE / "b.png")), annotations=[
            dm.Mask(image=corner(), label=1, id=5),
            dm.Polygon([10, 10, 30, 10, 30, 25, 10, 25], label=0, id=6),
        ]),
    ]
    dataset = dm.Dataset.from_iterable(items, categories=labels)
    with tempfile.TemporaryDirectory() as out:
        dataset.export(out, "coco_instances", save_media=False)
        written = json.loads((Path(out) / "annotations" / "instances_default.json").read_text())
        shutil.copy(Path(out) / "annotations" / "instances_default.json",
                    HERE / "instances.json")
    print(json.dumps(written)[:2000])


if __name__ == "__main__":
    main()
