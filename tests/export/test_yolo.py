"""YOLO segmentation: the files Ultralytics reads, and the same dataset read back."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from samdesk import masks
from samdesk.cli import main
from samdesk.export import ExportError, ExportOptions, export
from samdesk.export.detect import recognise
from samdesk.export.polygons import mask_to_polygons
from samdesk.export.yolo import closest_points, merge_parts
from samdesk.export.yolo_import import import_yolo
from samdesk.project import Project
from tests.export import stress_images
from tests.export.stress_images import Stress, filled, iou, same_images
from tests.export_fixtures import Sample, build

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture
def sample(tmp_path: Path) -> Sample:
    built = build(tmp_path / "project")
    yield built
    built.project.close()


@pytest.fixture
def stress(tmp_path: Path) -> Stress:
    built = stress_images.build(tmp_path / "stress")
    yield built
    built.project.close()


def rows(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text(encoding="utf-8").splitlines()]


def test_classes_are_0_to_n_minus_1_after_a_deleted_label(sample: Sample, tmp_path: Path) -> None:
    project = sample.project
    bird = project.add_label("blue bird ü")
    a = project.image_by_path("a.png")
    assert a is not None
    block = np.zeros((30, 40), bool)
    block[20:28, 2:12] = True
    project.add_annotation(a.id, masks.encode(block), bird.id)
    project.delete_label(sample.labels["cat"])  # label ids now 2 (dog) and 3 (bird)
    out = tmp_path / "yolo"
    summary = export(project, "yolo", ExportOptions(out=out))
    data = yaml.safe_load((out / "data.yaml").read_text(encoding="utf-8"))
    assert data["names"] == {0: "dog", 1: "blue bird ü"} and data["nc"] == 2
    assert data["train"] == data["val"] == "images"
    assert Path(data["path"]) == out.resolve()
    classes = [row[0] for row in rows(out / "labels" / "a.txt")]
    assert classes == ["0", "0", "1"]  # the two dog masks, then the bird
    assert "skipped 5 masks: no label" in summary.lines()  # cat's 4, and the unlabelled one


def test_layout_upright_images_and_normalised_corners(sample: Sample, tmp_path: Path) -> None:
    out = tmp_path / "yolo"
    export(sample.project, "yolo", ExportOptions(out=out))
    for name in ("a.png", "sub/b.png", "c.jpg", "d.png"):
        assert (out / "images" / name).is_file()
    assert (out / "labels" / "sub" / "b.txt").is_file()
    assert (out / "labels" / "d.txt").read_text() == ""  # no mask: a background image
    turned = Image.open(out / "images" / "c.jpg")
    assert turned.size == (20, 30) and turned.getexif().get(0x0112) in (None, 1)
    (row,) = rows(out / "labels" / "sub" / "b.txt")  # b: rows 3..16, columns 4..19 of 25x20
    assert row[0] == "0" and all(len(v.split(".")[1]) == 6 for v in row[1:])
    corners = np.asarray(row[1:], float).reshape(-1, 2) * [25, 20]
    assert sorted(map(tuple, np.rint(corners).astype(int))) == [(4, 3), (4, 17), (20, 3),
                                                                 (20, 17)]


def test_summary_says_how_many_masks_lost_their_holes(stress: Stress, tmp_path: Path) -> None:
    summary = export(stress.project, "yolo", ExportOptions(out=tmp_path / "yolo"))
    assert ("note: 2 masks had holes, filled in their polygons: a YOLO polygon cannot hold a "
            "hole (coco-rle and png-instance keep them)") in summary.lines()  # donut, borders


def run_ultralytics(tmp_path: Path, code: str, *args: str) -> str:
    """Run ``code`` with ultralytics in a child process; its stdout.

    Importing ultralytics changes the process for good (it patches cv2 and
    torch functions and registers PIL plugins), so it never runs in the test
    process. Its settings go to a temporary YOLO_CONFIG_DIR, offline.
    """
    if importlib.util.find_spec("ultralytics") is None:
        pytest.skip("ultralytics is not installed (the test extra)")
    env = {**os.environ, "YOLO_CONFIG_DIR": str(tmp_path / "ultralytics-config"),
           "YOLO_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                            text=True, env=env, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


MERGE = """
import sys, numpy as np
from ultralytics.data.converter import merge_multi_segment
polygons = list(np.load(sys.argv[1], allow_pickle=True))
np.save(sys.argv[2], np.concatenate(merge_multi_segment(polygons), axis=0))
"""


def test_parts_are_merged_as_ultralytics_merges_them(tmp_path: Path) -> None:
    mask = stress_images.parts(160, 120)
    polygons = mask_to_polygons(mask)
    assert len(polygons) == 3
    ours = tmp_path / "polygons.npy"
    np.save(ours, np.array(polygons, dtype=object), allow_pickle=True)
    run_ultralytics(tmp_path, MERGE, str(ours), str(tmp_path / "theirs.npy"))
    theirs = np.load(tmp_path / "theirs.npy")
    assert np.array_equal(merge_parts(polygons), theirs)


READ_DATASET = """
import json, sys
from pathlib import Path
from ultralytics.data import utils
from ultralytics.data.dataset import YOLODataset
utils.check_font = lambda *args, **kwargs: None  # no download
data = utils.check_det_dataset(sys.argv[1])
dataset = YOLODataset(img_path=data["train"], data=data, task="segment", augment=False)
print(json.dumps({
    "nc": data["nc"], "names": {str(k): v for k, v in data["names"].items()},
    "train": str(data["train"]), "val": str(data["val"]),
    "labels": {Path(lb["im_file"]).name: {"shape": list(lb["shape"]),
                                          "segments": len(lb["segments"]),
                                          "cls": lb["cls"].ravel().tolist()}
               for lb in dataset.labels}}))
"""


def test_ultralytics_reads_the_dataset(stress: Stress, tmp_path: Path) -> None:
    out = tmp_path / "yolo"
    export(stress.project, "yolo", ExportOptions(out=out))
    data = json.loads(run_ultralytics(tmp_path, READ_DATASET,
                                      str(out / "data.yaml")).splitlines()[-1])
    assert data["nc"] == 3
    assert data["names"] == {str(i): n for i, n in enumerate(stress_images.NAMES)}
    assert Path(data["train"]) == Path(data["val"]) == (out / "images").resolve()
    by_image = data["labels"]
    assert sorted(by_image) == ["gray.png", "photo.jpg", "rgba.png"]
    assert by_image["photo.jpg"]["shape"] == [160, 120]  # height, width: upright
    assert [by_image[n]["segments"] for n in ("photo.jpg", "gray.png", "rgba.png")] == [3, 2, 1]
    assert by_image["photo.jpg"]["cls"] == [0, 1, 2]


def test_round_trip_keeps_what_a_polygon_holds(stress: Stress, tmp_path: Path) -> None:
    out = tmp_path / "yolo"
    export(stress.project, "yolo", ExportOptions(out=out))
    with same_images(stress, tmp_path / "again") as project:
        summary = import_yolo(project, out)
        assert summary.problems == [] and summary.annotations_added == 6
        assert [lab.name for lab in project.labels()] == list(stress_images.NAMES)
        assert [lab.id for lab in project.labels()] == [1, 2, 3]  # class + 1
        assert summary.lines()[1:5] == ["categories, file id -> project id:",
                                        "  0 -> 1 'red car' (new label)",
                                        "  1 -> 2 'chien à poils' (new label)",
                                        "  2 -> 3 '猫' (new label)"]
        got = {}
        for record in project.images():
            originals = [k for k in stress.masks
                         if stress.project.annotation(k).image_id
                         == stress.project.image_by_path(record.path).id]
            layers = project.annotations(record.id)
            assert len(layers) == len(originals)
            for ann_id, layer in zip(originals, layers, strict=True):
                got[stress.names[ann_id]] = (masks.decode(layer.rle), stress.masks[ann_id])
                assert layer.label_id == stress.project.annotation(ann_id).label_id
    for what, (back, original) in got.items():
        if original.sum() > 1000:
            assert iou(back, filled(original)) >= 0.98, what
        assert np.array_equal(back, filled(original)), what  # the joins add no pixel
    assert np.array_equal(*got["pixel"])
    assert np.array_equal(*got["whole"])
    assert iou(*got["parts"]) >= 0.98


def test_import_reports_each_bad_line_and_imports_the_rest(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    Image.fromarray(np.zeros((50, 100, 3), np.uint8)).save(folder / "a.png")
    dataset = tmp_path / "dataset"
    (dataset / "images" / "train").mkdir(parents=True)
    (dataset / "labels" / "train").mkdir(parents=True)
    Image.fromarray(np.zeros((50, 100, 3), np.uint8)).save(dataset / "images/train/a.png")
    (dataset / "data.yaml").write_text("path: /nowhere\ntrain: images/train\nval: images/val\n"
                                       "names: [cat, dog]\n", encoding="utf-8")
    square = "0.1 0.2 0.5 0.2 0.5 0.8 0.1 0.8"
    (dataset / "labels/train/a.txt").write_text("\n".join([
        f"0 {square}", f"x {square}", f"7 {square}", "1 0.1 0.2 0.5", f"1 {square} 1.5 0.5",
        "1 0.1 0.1 0.2 0.2", "1 0.5 0.5 0.2 0.4", f"0 {square}", "1 0.5 0.5",
    ]) + "\n", encoding="utf-8")
    with Project.open(folder) as project:
        summary = import_yolo(project, dataset)
        lines = summary.lines()
        (layer,) = project.annotations()
        boxes = project.pending_boxes()
    assert layer.label_id == 1 and masks.area(layer.rle) == 40 * 30
    assert [b.box for b in boxes] == [pytest.approx((0.0, 0.0, 20.0, 10.0)),
                                      pytest.approx((40.0, 15.0, 60.0, 35.0))]
    assert [b.label_id for b in boxes] == [2, 2]
    assert "val: images/val: " + str(dataset / "images/val") + " does not exist" in lines
    assert "labels/train/a.txt line 2: class 'x' is not a number" in lines
    assert ("labels/train/a.txt line 3: class 7 is not in the dataset's names (classes 0..1)"
            in lines)
    assert "labels/train/a.txt line 4: an odd number of coordinates (3)" in lines
    assert any(line.startswith("labels/train/a.txt line 5: coordinate 1.5 lies outside 0..1")
               for line in lines)
    assert "labels/train/a.txt line 9: a polygon needs 3 points or more, this line has 1" \
        in lines
    assert not any("line 6" in line or "line 7" in line for line in lines)  # boxes
    assert summary.duplicates_skipped == 1  # line 8 repeats line 1


def test_a_dataset_of_other_images_imports_nothing(sample: Sample, tmp_path: Path) -> None:
    dataset = tmp_path / "dataset"
    (dataset / "labels").mkdir(parents=True)
    (dataset / "labels" / "zebra.txt").write_text("0 0 0 1 0 1 1\n", encoding="utf-8")
    (dataset / "classes.txt").write_text("cat\n", encoding="utf-8")
    before = sample.project.labels()
    summary = import_yolo(sample.project, dataset)
    assert summary.nothing_matched is not None and "'zebra.txt'" in summary.nothing_matched
    assert sample.project.labels() == before


def test_no_images_mode_is_refused(sample: Sample, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="--images none cannot be"):
        export(sample.project, "yolo", ExportOptions(out=tmp_path / "y", images="none"))
    assert not (tmp_path / "y").exists()


def test_two_images_of_one_stem_get_two_label_files(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    for name in ("a.png", "a.jpg"):
        Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(folder / name)
    with Project.open(folder) as project:
        label = project.add_label("x")
        for record in project.images():
            project.add_annotation(record.id, masks.encode(np.ones((20, 20), bool)), label.id)
        export(project, "yolo", ExportOptions(out=tmp_path / "y"))
    assert sorted(p.name for p in (tmp_path / "y" / "images").iterdir()
                  if not p.name.startswith(".")) == ["a.jpg.jpg", "a.png.png"]
    assert sorted(p.name for p in (tmp_path / "y" / "labels").glob("*.txt")) == [
        "a.jpg.txt", "a.png.txt"]
    with same_folder_again(folder) as project:
        summary = import_yolo(project, tmp_path / "y")
    assert summary.problems == [] and summary.duplicates_skipped == 2


def same_folder_again(folder: Path) -> Project:
    return Project.open(folder)


def test_command_line_export_and_import(stress: Stress, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "yolo"
    folder = stress.folder
    stress.project.close()
    assert main(["export", str(folder), "--format", "yolo", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("yolo: done, 3 images, 6 masks") and "2 masks had holes" in printed
    assert recognise(out) == "yolo" and recognise(out / "data.yaml") == "yolo"


def test_a_moved_dataset_and_one_without_yaml_import(sample: Sample, tmp_path: Path) -> None:
    out = tmp_path / "yolo"
    export(sample.project, "yolo", ExportOptions(out=out))
    moved = tmp_path / "elsewhere"
    out.rename(moved)  # data.yaml's path no longer exists: its own folder is used
    (moved / "data.yaml").rename(moved / "my-data.yml")
    assert recognise(moved / "my-data.yml") == "yolo"
    summary = import_yolo(sample.project, moved / "my-data.yml")
    assert summary.problems == [] and summary.duplicates_skipped == 5
    assert summary.annotations_added == 1  # the ring comes back filled: other pixels
    bare = tmp_path / "bare"  # labelImg / X-AnyLabeling: labels/ and classes.txt only
    (bare / "labels" / "sub").mkdir(parents=True)
    (bare / "labels" / "sub" / "b.txt").write_text("1 0 0 0.4 0 0.4 0.5 0 0.5\n",
                                                   encoding="utf-8")
    (bare / "classes.txt").write_text("cat\nowl\n", encoding="utf-8")
    project = sample.project
    summary = import_yolo(project, bare)
    b = project.image_by_path("sub/b.png")
    owl = project.label_by_name("owl")
    (layer,) = [a for a in project.annotations(b.id) if a.label_id == owl.id]
    assert summary.problems == [] and summary.labels_created == ["owl"]
    assert masks.area(layer.rle) == 10 * 10  # columns 0..9, rows 0..9 of 25x20


def test_a_roboflow_layout_imports(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(folder / "leaf_01.jpg")
    dataset = tmp_path / "roboflow"
    for split in ("train", "valid"):
        (dataset / split / "images").mkdir(parents=True)
        (dataset / split / "labels").mkdir(parents=True)
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(  # resized copy: fractions still fit
        dataset / "train" / "images" / "leaf_01.jpg")
    (dataset / "train" / "labels" / "leaf_01.txt").write_text(
        "0 0.25 0.25 0.75 0.25 0.75 0.75 0.25 0.75\n", encoding="utf-8")
    (dataset / "data.yaml").write_text(
        "train: ../train/images\nval: ../valid/images\nnc: 1\nnames: ['leaf']\n",
        encoding="utf-8")
    with Project.open(folder) as project:
        summary = import_yolo(project, dataset)
        (layer,) = project.annotations()
    assert summary.problems == [] and summary.images_matched == 1
    assert masks.area(layer.rle) == 20 * 20


def test_closest_points_in_blocks_match_one_argmin() -> None:
    rng = np.random.default_rng(3)
    one, other = rng.integers(0, 50, (300, 2)).astype(float), rng.integers(0, 50, (200, 2))
    distance = ((one[:, None, :] - other[None, :, :]) ** 2).sum(-1)
    expected = np.unravel_index(np.argmin(distance), distance.shape)  # many ties: the first
    assert closest_points(one, other.astype(float), chunk=1000) == tuple(map(int, expected))


def test_a_cancelled_export_writes_no_data_yaml(sample: Sample, tmp_path: Path) -> None:
    calls = []

    def cancel() -> bool:
        calls.append(1)
        return len(calls) > 2

    summary = export(sample.project, "yolo", ExportOptions(out=tmp_path / "y", cancel=cancel))
    assert summary.cancelled and summary.images == 2
    assert not (tmp_path / "y" / "data.yaml").exists()
    assert len(list((tmp_path / "y" / "labels").rglob("*.txt"))) == 2
