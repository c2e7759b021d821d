"""YouTube-VIS export and import: readers find every track's mask on every frame, null where
absent; importing the file gives back the same tracks; COCO exports carry track_id."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as cocomask

from samdesk import masks
from samdesk.cli import main
from samdesk.errors import FormatError
from samdesk.export import ExportOptions, export
from samdesk.export.detect import import_source, recognise
from samdesk.project import Project

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

W, H = 32, 24


def write_frames(folder: Path, count: int = 6) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    paths = []
    for k in range(count):
        path = folder / f"{k:05d}.png"
        Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def blob(x: int, y: int, hole: bool = False) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[y:y + 8, x:x + 9] = True
    if hole:
        mask[y + 3:y + 5, x + 3:x + 5] = False
    return mask


@pytest.fixture
def sequence(tmp_path: Path):
    """Six frames; a car tracked on frames 0-4 (person-made on 0, propagated on 1-4, the
    person deleted it on 2), a dog on frames 3-5, a loose mask on frame 5."""
    folder = tmp_path / "clip"
    write_frames(folder)
    project = Project.open(folder)
    project.set_sequence(True)
    frames = project.frame_ids()
    car, dog = project.add_label("car"), project.add_label("dog")
    expected: dict[str, dict[int, np.ndarray]] = {"car": {}, "dog": {}}
    car_track = project.add_track(car.id)
    project.add_annotation(frames[0], masks.encode(blob(1, 1, hole=True)), track_id=car_track.id)
    expected["car"][0] = blob(1, 1, hole=True)
    for k in range(1, 5):
        project.write_propagated(frames[k], car_track.id, masks.encode(blob(1 + 2 * k, 2)), 1.0)
        expected["car"][k] = blob(1 + 2 * k, 2)
    project.delete_annotations([project.track_layers(car_track.id)[frames[2]].id])
    del expected["car"][2]
    dog_track = project.add_track(dog.id)
    for k in range(3, 6):
        project.add_annotation(frames[k], masks.encode(blob(20, 14 - k)), track_id=dog_track.id)
        expected["dog"][k] = blob(20, 14 - k)
    loose = np.zeros((H, W), bool)
    loose[20:23, 0:4] = True
    project.add_annotation(frames[5], masks.encode(loose), car.id)
    yield project, expected, loose
    project.close()


def ytvos_ann_to_rle(video: dict, ann: dict, frame: int) -> dict:
    """``pycocotools.ytvos.YTVOS.annToRLE`` (youtubevos/cocoapi): polygons, list counts
    or compressed RLE, at the video's height and width."""
    h, w = video["height"], video["width"]
    segm = ann["segmentations"][frame]
    if isinstance(segm, list):
        return cocomask.merge(cocomask.frPyObjects(segm, h, w))
    if isinstance(segm["counts"], list):
        return cocomask.frPyObjects(segm, h, w)
    return segm


def detectron2_frames(video: dict, anns: list[dict]) -> list[list[dict]]:
    """The per-frame objects the detectron2 YouTube-VIS loader (``load_ytvis_json`` of
    VITA / Mask2Former-VIS) builds: a frame lacking a box or a mask is skipped."""
    frames = []
    for frame in range(video["length"]):
        objs = []
        for anno in anns:
            boxes, segms = anno.get("bboxes"), anno.get("segmentations")
            if not (boxes and segms and boxes[frame] and segms[frame]):
                continue
            objs.append({"id": anno["id"], "category_id": anno["category_id"],
                         "bbox": boxes[frame], "segmentation": segms[frame]})
        frames.append(objs)
    return frames


def test_readers_find_every_tracks_mask_on_every_frame(sequence, tmp_path: Path) -> None:
    project, expected, loose = sequence
    summary = export(project, "youtube-vis", ExportOptions(out=tmp_path / "out"))
    path = tmp_path / "out" / "instances.json"
    assert summary.files == [path] and summary.annotations == 8 and summary.images == 6
    doc = json.loads(path.read_text(encoding="utf-8"))
    [video] = doc["videos"]
    assert (video["width"], video["height"], video["length"]) == (W, H, 6)
    assert video["file_names"] == [f"{k:05d}.png" for k in range(6)]
    assert all((tmp_path / "out" / "images" / name).is_file() for name in video["file_names"])
    names = {c["id"]: c["name"] for c in doc["categories"]}
    by_name = {}
    for ann in doc["annotations"]:
        assert ann["video_id"] == video["id"] and ann["iscrowd"] == 0
        assert len(ann["segmentations"]) == len(ann["areas"]) == len(ann["bboxes"]) == 6
        by_name.setdefault(names[ann["category_id"]], []).append(ann)
    assert sorted((k, len(v)) for k, v in by_name.items()) == [("car", 2), ("dog", 1)]
    loose_ann = next(a for a in by_name["car"] if "track_id" not in a)
    car_ann = next(a for a in by_name["car"] if "track_id" in a)
    objects = {"car": (car_ann, expected["car"]), "dog": (by_name["dog"][0], expected["dog"]),
               "loose": (loose_ann, {5: loose})}
    for ann, frames in objects.values():
        for frame in range(6):
            if frame not in frames:  # absent: null in all three lists
                assert ann["segmentations"][frame] is None
                assert ann["areas"][frame] is None and ann["bboxes"][frame] is None
                continue
            decoded = cocomask.decode(ytvos_ann_to_rle(video, ann, frame)).astype(bool)
            assert np.array_equal(decoded, frames[frame]), (ann["id"], frame)
            assert ann["areas"][frame] == int(frames[frame].sum())
            rows, cols = np.nonzero(frames[frame])
            assert ann["bboxes"][frame] == [cols.min(), rows.min(), np.ptp(cols) + 1,
                                            np.ptp(rows) + 1]
    loaded = detectron2_frames(video, doc["annotations"])
    assert [len(objs) for objs in loaded] == [1, 1, 0, 2, 2, 2]
    areas = [a for a in car_ann["areas"] if a]  # ytvoseval's avg_area
    assert np.mean(areas) == np.mean([m.sum() for m in expected["car"].values()])


def test_coco_exports_carry_the_track_id(sequence, tmp_path: Path) -> None:
    project, _, _ = sequence
    tracks = {t.label_id: t.id for t in project.tracks()}
    for fmt in ("coco-rle", "coco-polygon"):
        export(project, fmt, ExportOptions(out=tmp_path / fmt / "c.json", images="none"))
        doc = json.loads((tmp_path / fmt / "c.json").read_text(encoding="utf-8"))
        found = sorted((a["image_id"], a.get("track_id", 0)) for a in doc["annotations"])
        frames = project.frame_ids()
        car, dog = tracks[project.label_by_name("car").id], tracks[project.label_by_name("dog").id]
        assert found == sorted([(frames[0], car), (frames[1], car), (frames[3], car),
                                (frames[4], car), (frames[3], dog), (frames[4], dog),
                                (frames[5], dog), (frames[5], 0)])
        propagated = [a for a in doc["annotations"] if a["image_id"] == frames[1]]
        assert propagated[0]["attributes"] == {"object_score": 1.0}


def tracks_seen(project: Project) -> list[tuple[str, tuple[tuple[str, bytes], ...]]]:
    """Each track as a person sees it: its label, and per frame its file and pixels."""
    names = {label.id: label.name for label in project.labels()}
    out = []
    for track in project.tracks():
        frames = tuple((project.image(image_id).path, masks.decode(layer.rle).tobytes())
                       for image_id, layer in sorted(project.track_layers(track.id).items()))
        assert all(layer.label_id == track.label_id
                   for layer in project.track_layers(track.id).values())
        out.append((names[track.label_id], frames))
    return sorted(out)


def test_importing_the_export_gives_back_the_same_tracks(sequence, tmp_path: Path) -> None:
    project, _, _ = sequence
    export(project, "youtube-vis", ExportOptions(out=tmp_path / "vis.json"))
    fresh = tmp_path / "fresh"
    shutil.copytree(project.folder, fresh, ignore=shutil.ignore_patterns(".samdesk"))
    assert recognise(tmp_path / "vis.json") == "youtube-vis"
    with Project.open(fresh) as other:
        fmt, summary = import_source(other, tmp_path / "vis.json")
        assert fmt == "youtube-vis"
        lines = summary.lines()
        assert lines[0] == "vis.json: 6 frames matched, 3 tracks added (8 masks), 2 new labels"
        # the loose mask comes back as a one-frame track; the others as they were
        loose = [("car", ((project.image(project.frame_ids()[5]).path,
                           masks.decode(project.annotations(project.frame_ids()[5])[-1].rle)
                           .tobytes()),))]
        assert tracks_seen(other) == sorted(tracks_seen(project) + loose)
        assert other.is_sequence
        assert all(layer.edited for layer in other.annotations())
        _, again = import_source(other, tmp_path / "vis.json")  # a second time: nothing new
        assert again.tracks_added == 0 and again.tracks_skipped == 3
        assert len(other.annotations()) == 8
        assert other.undo() == "Import vis.json"  # the second changed nothing: no step
        assert other.tracks() == [] and other.annotations() == []


def test_a_coco_export_imported_back_keeps_its_tracks(sequence, tmp_path: Path) -> None:
    project, _, _ = sequence
    export(project, "coco-rle", ExportOptions(out=tmp_path / "c.json", images="none"))
    fresh = tmp_path / "fresh"
    shutil.copytree(project.folder, fresh, ignore=shutil.ignore_patterns(".samdesk"))
    with Project.open(fresh) as other:
        fmt, summary = import_source(other, tmp_path / "c.json")
        assert fmt == "coco" and summary.annotations_added == 8
        assert tracks_seen(other) == tracks_seen(project)
        assert sum(layer.track_id is None for layer in other.annotations()) == 1


def test_cvat_track_ids_in_attributes_make_tracks_and_one_mask_per_image(tmp_path: Path) -> None:
    folder = tmp_path / "clip"
    write_frames(folder, 2)
    seg = masks.normalize(masks.encode(blob(2, 2)))
    other = masks.normalize(masks.encode(blob(12, 10)))
    document = {"images": [{"id": 1, "file_name": "00000.png", "width": W, "height": H},
                           {"id": 2, "file_name": "00001.png", "width": W, "height": H}],
                "categories": [{"id": 1, "name": "car"}],
                "annotations": [
                    {"id": 1, "image_id": 1, "category_id": 1, "segmentation": seg,
                     "attributes": {"track_id": 0, "keyframe": True}},
                    {"id": 2, "image_id": 2, "category_id": 1, "segmentation": seg,
                     "attributes": {"track_id": 0, "keyframe": False}},
                    {"id": 3, "image_id": 2, "category_id": 1, "segmentation": other,
                     "attributes": {"track_id": 0}}]}
    source = tmp_path / "cvat.json"
    source.write_text(json.dumps(document), encoding="utf-8")
    with Project.open(folder) as project:
        _, summary = import_source(project, source)
        [track] = project.tracks()
        assert len(project.track_layers(track.id)) == 2 and len(project.annotations()) == 3
        assert "track_id 0: two masks on one image; the second was added in no track" in \
            summary.lines()


def write_vis(path: Path, document: dict) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def small_file(file_names: list[str]) -> dict:
    seg = masks.normalize(masks.encode(blob(2, 2)))
    return {"videos": [{"id": 7, "width": W, "height": H, "length": len(file_names),
                        "file_names": file_names}],
            "categories": [{"id": 3, "name": "bird"}],
            "annotations": [{"id": 1, "video_id": 7, "category_id": 3,
                             "segmentations": [seg] * len(file_names)}]}


def test_a_file_missing_a_field_is_refused_in_one_line_naming_file_and_field(
        tmp_path: Path) -> None:
    folder = tmp_path / "clip"
    write_frames(folder, 3)
    document = small_file(["00000.png", "00001.png", "00002.png"])
    del document["videos"][0]["file_names"]
    source = write_vis(tmp_path / "broken.json", document)
    with Project.open(folder) as project, pytest.raises(FormatError) as caught:
        import_source(project, source, "youtube-vis")
    assert str(caught.value) == "broken.json: videos[0].file_names: missing"
    with Project.open(folder) as project:
        assert project.annotations() == [] and project.labels() == []
    document = small_file(["00000.png"])
    del document["annotations"][0]["segmentations"]
    source = write_vis(tmp_path / "no_segmentations.json", document)
    with Project.open(folder) as project:
        _, summary = import_source(project, source, "youtube-vis")
        assert "no_segmentations.json: annotations[0].segmentations: missing" in summary.lines()


def test_a_frame_that_is_not_in_the_folder_is_one_line_and_the_rest_is_imported(
        tmp_path: Path, capsys) -> None:
    folder = tmp_path / "clip"
    write_frames(folder, 3)
    source = write_vis(tmp_path / "birds.json",
                       small_file(["v/00000.png", "v/00001.png", "v/gone.png"]))
    with Project.open(folder):
        pass
    assert main(["import", str(folder), str(source)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("birds.json: 2 frames matched, 1 track added (2 masks), 1 new label")
    assert ("birds.json: videos[0].file_names[2] (v/gone.png): not in the project (no such "
            "frame in the folder)") in out
    with Project.open(folder) as project:
        [track] = project.tracks()
        assert len(project.track_layers(track.id)) == 2


def test_info_says_sequence_and_tracks(sequence, capsys) -> None:
    project, _, _ = sequence
    folder = project.folder
    project.close()
    assert main(["info", str(folder)]) == 0
    assert "  a sequence (the images are frames, in order); 2 tracks" in \
        capsys.readouterr().out.splitlines()
    assert main(["info", str(folder), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["sequence"] is True and info["tracks"] == 2


def test_samdesk_export_writes_youtube_vis(sequence, tmp_path: Path, capsys) -> None:
    project, _, _ = sequence
    folder = project.folder
    project.close()
    out = tmp_path / "vis" / "train.json"
    assert main(["export", str(folder), "--format", "youtube-vis", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "youtube-vis: done, 6 images, 8 masks, 1 files written"
    assert "note: 3 objects in 1 video: 2 tracks, and 1 mask in no track as one-frame " \
           "objects" in lines
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert [v["length"] for v in doc["videos"]] == [6] and len(doc["annotations"]) == 3
