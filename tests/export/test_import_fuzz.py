"""import-coco fed random JSON and random valid-looking COCO (hypothesis).

Every run either succeeds, or exits non-zero with exactly one error line on
stderr and the project exactly as it was (labels, masks, image count).
Bounded: a few dozen examples, no deadline, so it runs in seconds.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from samdesk import masks
from samdesk.cli import main
from samdesk.project import Project
from tests.export_fixtures import write_images

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
FUZZ = settings(max_examples=20, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PROGRESS = re.compile(r"^import: \d+/\d+ ")
NAMES = ["a.png", "sub/b.png", "sub\\b.png", "c.jpg", "d.png", "x/d.png", "missing.png", "",
         "./a.png", "/abs/a.png", "a\\b.png", "\udcff.png", "two\nlines.png"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz") / "project"
    write_images(root)
    with Project.open(root) as project:
        cat = project.add_label("cat")
        mask = np.zeros((30, 40), bool)
        mask[3:9, 4:12] = True
        project.add_annotation(project.images()[0].id, masks.encode(mask), cat.id)
    return root


def snapshot(folder: Path) -> tuple[Any, ...]:
    """What ``info`` and an export would show: images, labels, every mask's pixels."""
    with Project.open(folder) as project:
        return (len(project.images()),
                [(lab.id, lab.name, lab.color) for lab in project.labels()],
                [(a.id, a.image_id, a.label_id, masks.normalize(a.rle)["counts"], a.score)
                 for a in project.annotations()])


_state: dict[Path, tuple[Any, ...]] = {}
"""The project as the last successful import left it (an import that fails changes nothing)."""


def run_import(folder: Path, text: str) -> None:
    """import-coco on ``text``: success, or one error line and nothing changed."""
    path = folder.parent / "input.json"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    before = _state[folder] if folder in _state else snapshot(folder)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["import-coco", str(folder), str(path)])  # an unexpected error raises here
    event(f"exit status {rc}")
    after = snapshot(folder)
    _state[folder] = after
    if rc == 0:
        event("masks added" if after != before else "nothing added")
        return
    lines = [line for line in err.getvalue().splitlines() if not PROGRESS.match(line)]
    assert len(lines) == 1 and lines[0].startswith("samdesk: error: "), err.getvalue()
    assert "Traceback" not in err.getvalue()
    assert after == before


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=12)
coco_keys = st.sampled_from(["images", "annotations", "categories", "id", "file_name",
                             "segmentation", "counts", "size", "image_id", "category_id"])


@FUZZ
@given(st.one_of(json_values,
                 st.dictionaries(coco_keys, json_values, max_size=4),
                 st.text(max_size=40)))
def test_random_json_is_imported_or_refused_in_one_line(folder: Path, value: Any) -> None:
    text = value if isinstance(value, str) else json.dumps(value)
    run_import(folder, text)


numbers = st.one_of(st.integers(-5, 60), st.floats(-5, 60, allow_nan=False),
                    st.sampled_from([float("nan"), float("inf"), 1e300, 2 ** 40, -(2 ** 33)]))
polygon = st.lists(numbers, max_size=10)
rle = st.fixed_dictionaries({
    "size": st.one_of(st.sampled_from([[30, 40], [20, 25], [10, 12], [0, 0], [2 ** 20, 2 ** 13]]),
                      st.lists(st.integers(-2, 2 ** 33), max_size=3)),
    "counts": st.one_of(st.lists(st.integers(-1, 2 ** 34), max_size=5),
                        st.text(alphabet="0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`"
                                         "abcdefghijklmno", max_size=12),
                        st.integers(), st.none()),
})
segmentation = st.one_of(st.lists(polygon, max_size=3), rle, st.none(), json_values)
ids = st.one_of(st.integers(0, 4), st.sampled_from(["1", 1.5, None, True, 2 ** 70]))
good_ids = st.integers(1, 4)
mostly_good_ids = st.one_of(good_ids, good_ids, good_ids, ids)
annotation = st.fixed_dictionaries(
    {"id": ids, "image_id": mostly_good_ids, "category_id": mostly_good_ids,
     "segmentation": st.one_of(st.lists(st.lists(st.integers(0, 45), min_size=6, max_size=8),
                                        min_size=1, max_size=2), segmentation)},
    optional={"score": numbers, "attributes": st.fixed_dictionaries({"score": numbers}),
              "bbox": st.lists(numbers, max_size=4), "iscrowd": st.integers(0, 1)})
image = st.fixed_dictionaries(
    {"id": mostly_good_ids, "file_name": st.one_of(st.sampled_from(NAMES[:6]),
                                                   st.sampled_from(NAMES), st.text(max_size=10))},
    optional={"width": st.one_of(st.integers(-1, 50), st.none()),
              "height": st.one_of(st.integers(-1, 50), st.none())})
category = st.fixed_dictionaries(
    {"id": mostly_good_ids,
     "name": st.one_of(st.sampled_from(["cat", "dog", " ", "a\tb", "x\u2028y"]),
                       st.text(max_size=6))},
    optional={"color": st.one_of(st.sampled_from(["#ff0000", "red", [1, 2, 3], [300, 0, 0]]),
                                 json_values)})
coco = st.fixed_dictionaries(
    {"images": st.lists(image, max_size=4, unique_by=lambda item: repr(item["id"]))},
    optional={"categories": st.lists(category, max_size=3,
                                     unique_by=lambda item: repr(item["id"])),
              "annotations": st.lists(annotation, max_size=5)})




rectangle = st.builds(lambda x, y, w, h: [x, y, x + w, y, x + w, y + h, x, y + h],
                      st.integers(0, 8), st.integers(0, 8), st.integers(1, 4), st.integers(1, 4))


@st.composite
def plausible_coco(draw: st.DrawFn) -> dict[str, Any]:
    """A file that mostly fits the project (its images, sizes left out), with a fault or two."""
    names = draw(st.lists(st.sampled_from(NAMES[:6]), min_size=1, max_size=4, unique=True))
    images = [{"id": k, "file_name": name} for k, name in enumerate(names, start=1)]
    categories = [{"id": 1, "name": draw(st.sampled_from(["cat", "dog", "cat\n"]))},
                  {"id": 2, "name": "bird"}]
    annotations = [{"id": 100 + k, "image_id": draw(st.integers(1, len(images) + 1)),
                    "category_id": draw(st.integers(1, 3)),
                    "segmentation": draw(st.one_of(st.lists(rectangle, min_size=1, max_size=2),
                                                   segmentation)),
                    "score": draw(numbers)}
                   for k in range(draw(st.integers(1, 4)))]
    return {"images": images, "categories": categories, "annotations": annotations}


@FUZZ
@given(st.one_of(plausible_coco(), coco))
def test_random_coco_is_imported_or_refused_in_one_line(folder: Path,
                                                        document: dict[str, Any]) -> None:
    run_import(folder, json.dumps(document))  # NaN and Infinity as json.dumps writes them
