"""Writes ``labelme_written.json`` with labelme's own code (not run by the tests).

Run with labelme importable (``pip install labelme`` in another environment;
it pulls PyQt5): ``python tests/export/data/make_labelme_written.py``. The
shapes are built as labelme's app builds them (``Shape`` -> dict with the
mask through ``utils.img_arr_to_b64``) and saved with ``LabelFile.save``.
test_labelme_import.py reads the file and checks what each shape means.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from labelme import utils
from labelme._label_file import LabelFile

HERE = Path(__file__).parent


def main() -> None:
    crop = np.zeros((6, 8), dtype=bool)  # a ring: 8x6 with a 4x2 hole
    crop[:, :] = True
    crop[2:4, 2:6] = False
    shapes = [
        {"label": "big dog", "points": [[2.0, 3.0], [12.0, 3.0], [12.0, 9.0], [2.0, 9.0]],
         "group_id": None, "description": "", "shape_type": "polygon", "flags": {}, "mask": None},
        {"label": "chat noir", "points": [[30.0, 20.0], [33.0, 20.0]], "group_id": None,
         "description": "", "shape_type": "circle", "flags": {}, "mask": None},
        {"label": "箱", "points": [[14.5, 2.25], [24.75, 11.5]], "group_id": None,
         "description": "", "shape_type": "rectangle", "flags": {}, "mask": None},
        {"label": "big dog", "points": [[20.0, 18.0], [27.0, 23.0]], "group_id": 7,
         "description": "", "shape_type": "mask", "flags": {},
         "mask": utils.img_arr_to_b64(crop.astype(np.uint8))},
        {"label": "big dog", "points": [[1.0, 20.0], [5.0, 20.0], [5.0, 26.0], [1.0, 26.0]],
         "group_id": 7, "description": "", "shape_type": "polygon", "flags": {}, "mask": None},
        {"label": "tip", "points": [[3.0, 3.0]], "group_id": None, "description": "",
         "shape_type": "point", "flags": {}, "mask": None},
        {"label": "edge", "points": [[0.0, 0.0], [10.0, 10.0]], "group_id": None,
         "description": "", "shape_type": "line", "flags": {}, "mask": None},
    ]
    LabelFile().save(str(HERE / "labelme_written.json"), shapes, "labelme_written.png",
                     30, 40, image_data=None, flags={})


if __name__ == "__main__":
    main()
