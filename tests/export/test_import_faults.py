"""import-coco on bad input: one line naming the file and the item, the rest imported,
nothing written when nothing matches; backslash file names survive export -> import."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from samdesk import masks
from samdesk.errors import FormatError
from samdesk.export import ExportOptions, export, import_coco
from samdesk.export.coco_import import ImageMatcher
from samdesk.project import Project
from tests.export_fixtures import write_images

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
ROOT = Path(__file__).resolve().parents[2]
SQUARE = [[1, 1, 6, 1, 6, 6, 1, 6]]


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Project]:
    folder = tmp_path / "fresh"
    write_images(folder)
    project = Project.open(folder)
    yield project
    project.close()


def write_json(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document))
    return path


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "samdesk.cli", *args], cwd=ROOT,
                          capture_output=True, text=True)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("samdesk: ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def test_deeply_nested_json_is_one_line_naming_the_file(fresh: Project, tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(FormatError, match=r"^deep.json: JSON nested too deeply to read"):
        import_coco(fresh, deep)
    nested_id = tmp_path / "nested.json"  # parses, but an id nests 900 levels deep
    nested_id.write_text('{"images": [{"file_name": "a.png", "id": '
                         + "[" * 900 + "]" * 900 + "}]}")
    with pytest.raises(FormatError, match=r"^nested.json: images\[0\].id: must be an integer, "
                                          r"got \[\[\[\[\.\.\.\]\]\]\]$"):
        import_coco(fresh, nested_id)
    fresh.close()
    line = one_error_line(cli("import-coco", str(fresh.folder), str(deep)))
    assert line == "samdesk: error: deep.json: JSON nested too deeply to read " \
                   "(a COCO file nests a few levels)"


def test_rle_counts_above_2_to_the_32_are_reported_for_that_annotation(
        fresh: Project, tmp_path: Path) -> None:
    document = {
        "images": [{"id": 1, "file_name": "d.png", "width": 12, "height": 10}],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": [
            {"id": 5, "image_id": 1, "category_id": 1,
             "segmentation": {"size": [2 ** 20, 2 ** 13], "counts": [2 ** 33]}},
            {"id": 6, "image_id": 1, "category_id": 1, "segmentation": SQUARE},
        ],
    }
    path = write_json(tmp_path / "huge.json", document)
    summary = import_coco(fresh, path)
    assert summary.problems == [("annotation 5 (d.png)", "annotations[0].segmentation: RLE size "
                                 "or counts above 2^32 - 1, larger than any image")]
    assert summary.annotations_added == 1
    fresh.close()
    result = cli("import-coco", str(fresh.folder), str(path))
    assert result.returncode == 0 and "Traceback" not in result.stderr
    assert "annotation 5 (d.png): annotations[0].segmentation: RLE size" in result.stdout


def test_one_bad_polygon_is_reported_and_the_rest_imported(fresh: Project,
                                                           tmp_path: Path) -> None:
    document = {
        "images": [{"id": 1, "file_name": "d.png"}, {"id": 2, "file_name": "a.png"}],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": [
            {"id": 7, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, 5, 0, 5]]},
            {"id": 8, "image_id": 2, "category_id": 1, "segmentation": [[0, "x", 1, 1, 2, 2]]},
            {"id": 9, "image_id": 1, "category_id": 1, "segmentation": 5},
            {"id": 10, "image_id": 2, "category_id": 1,
             "segmentation": {"size": [30, 40], "counts": 5}},
            {"id": 11, "image_id": "one", "category_id": 1, "segmentation": SQUARE},
            {"id": 12, "image_id": 1, "category_id": 1, "segmentation": SQUARE},
            {"id": 13, "image_id": 2, "category_id": 1, "segmentation": SQUARE},
        ],
    }
    summary = import_coco(fresh, write_json(tmp_path / "polygons.json", document))
    assert summary.problems == [
        ("annotation 7 (d.png)", "annotations[0].segmentation[0]: has an odd number of "
                                 "coordinates (5)"),
        ("annotation 8 (a.png)", "annotations[1].segmentation[0]: must be a list of numbers "
                                 "x1, y1, x2, y2..."),
        ("annotation 9 (d.png)", "annotations[2].segmentation: must be a list of polygons or "
                                 "an RLE object, got int"),
        ("annotation 10 (a.png)", "annotations[3].segmentation: RLE counts must be str, bytes "
                                  "or a list of ints, got int"),
        ("annotation 11", "annotations[4].image_id: must be an integer, got 'one'"),
    ]
    assert summary.annotations_added == 2
    assert [masks.area(a.rle) for a in fresh.annotations()] == [25, 25]


def test_a_category_whose_name_holds_a_control_character_is_reported(
        fresh: Project, tmp_path: Path) -> None:
    document = {
        "images": [{"id": 1, "file_name": "d.png"}],
        "categories": [{"id": 1, "name": "two\nlines"}, {"id": 2, "name": "dog"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": SQUARE},
                        {"id": 2, "image_id": 1, "category_id": 1, "segmentation": SQUARE},
                        {"id": 3, "image_id": 1, "category_id": 2, "segmentation": SQUARE}],
    }
    summary = import_coco(fresh, write_json(tmp_path / "names.json", document))
    assert summary.problems == [("category 1", "label name 'two\\nlines' holds a control "
                                 "character ('\\n'); use printable text (2 annotations not "
                                 "imported)")]
    assert [lab.name for lab in fresh.labels()] == ["dog"]
    assert summary.annotations_added == 1
    assert all("\n" not in line for line in summary.lines())


def test_nothing_matched_exits_non_zero_naming_both_sides(fresh: Project,
                                                          tmp_path: Path) -> None:
    document = {"images": [{"id": 1, "file_name": "train/IMG_0001.jpg"},
                           {"id": 2, "file_name": "train/IMG_0002.jpg"}],
                "categories": [{"id": 1, "name": "cat"}],
                "annotations": [{"id": 1, "image_id": 1, "category_id": 1,
                                 "segmentation": SQUARE}]}
    path = write_json(tmp_path / "other.json", document)
    summary = import_coco(fresh, path)
    assert summary.nothing_matched is not None and summary.images_matched == 0
    fresh.close()
    line = one_error_line(cli("import-coco", str(fresh.folder), str(path)))
    assert line == ("samdesk: error: none of the 2 file names of other.json "
                    "(e.g. 'train/IMG_0001.jpg') matches an image of the project "
                    "(e.g. 'a.png'); file_name must be the path relative to the project "
                    "folder, or end with a file name found in it")
    with Project.open(fresh.folder) as project:
        assert project.labels() == [] and project.annotations() == []
    empty = write_json(tmp_path / "empty.json", {"images": [], "annotations": []})
    line = one_error_line(cli("import-coco", str(fresh.folder), str(empty)))
    assert line == "samdesk: error: empty.json lists no images, so there is nothing to import"


def test_a_backslash_in_a_file_name_keeps_its_masks_through_export_and_import(
        tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "a").mkdir()
    pixels = np.zeros((10, 12, 3), np.uint8)
    Image.fromarray(pixels).save(source / "a\\b.png")  # one file, named a\b.png (legal on Linux)
    Image.fromarray(pixels).save(source / "a" / "b.png")  # and a/b.png beside it
    block = np.zeros((10, 12), bool)
    block[2:5, 3:9] = True
    with Project.open(source) as project:
        label = project.add_label("cat")
        by_path = {r.path: r for r in project.images()}
        assert set(by_path) == {"a\\b.png", "a/b.png"}
        project.add_annotation(by_path["a\\b.png"].id, masks.encode(block), label.id)
        out = tmp_path / "coco.json"
        export(project, "coco-rle", ExportOptions(out=out))
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "a").mkdir()
    for name in ("a\\b.png", "a/b.png"):
        (copy / name).write_bytes((source / name).read_bytes())
    with Project.open(copy) as project:
        summary = import_coco(project, out)
        assert summary.problems == [] and summary.annotations_added == 1
        by_path = {r.path: r for r in project.images()}
        [layer] = project.annotations(by_path["a\\b.png"].id)
        assert np.array_equal(masks.decode(layer.rle), block)
        assert project.annotations(by_path["a/b.png"].id) == []


def test_a_windows_path_still_matches_when_no_name_holds_the_backslash(
        fresh: Project) -> None:
    matcher = ImageMatcher(fresh.images())
    record, reason = matcher.match("sub\\b.png")
    assert record is not None and record.path == "sub/b.png" and reason == ""
    record, reason = matcher.match("C:\\data\\train\\d.png")
    assert record is not None and record.path == "d.png"
    assert matcher.match("nowhere\\x.png") == (None, "not in the project")
