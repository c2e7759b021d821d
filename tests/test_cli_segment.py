"""``samdesk segment`` and ``samdesk embed`` as a person runs them."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from samdesk import masks
from samdesk.cli import main
from tests.model_factories import make_sam2_checkpoint, make_sam_checkpoint, registered_test_model


@pytest.fixture(autouse=True)
def empty_models_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMDESK_MODELS", str(tmp_path / "models"))


@pytest.fixture(scope="module")
def sam_file(tmp_path_factory):
    return make_sam_checkpoint(tmp_path_factory.mktemp("sam") / "tiny.pth")


@pytest.fixture
def disk_photo(tmp_path):
    """A bright disk on a dark, slightly noisy background, as a JPEG."""
    rng = np.random.default_rng(1)
    img = np.clip(rng.normal(40, 8, (240, 320, 3)), 0, 255).astype(np.uint8)
    cv2.circle(img, (200, 110), 60, (230, 200, 40), -1)
    path = tmp_path / "disk.jpg"
    Image.fromarray(img).save(path, quality=95)
    truth = np.zeros((240, 320), np.uint8)
    cv2.circle(truth, (200, 110), 60, 1, -1)
    return path, truth.astype(bool)


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


def test_grabcut_serves_points_and_boxes_when_nothing_is_installed(disk_photo, tmp_path):
    path, truth = disk_photo
    out = tmp_path / "m.json"
    assert main(["segment", str(path), "--box", "130,40,270,180", "--single", "--out",
                 str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["image"] == {"file": str(path), "width": 320, "height": 240}
    [entry] = doc["masks"]
    mask = masks.decode(entry["segmentation"])
    assert iou(mask, truth) > 0.9
    assert entry["area"] == int(mask.sum())
    assert entry["bbox"] == list(coco_mask.toBbox(entry["segmentation"]))
    assert isinstance(entry["segmentation"]["counts"], str)


def test_sam_json_has_every_candidate_best_first(disk_photo, tmp_path, sam_file):
    path, _ = disk_photo
    out = tmp_path / "m.json"
    with registered_test_model("sam", "tiny") as spec:
        assert main(["segment", str(path), "--points", "200,110", "--negative", "10,10",
                     "--model", spec.name, "--checkpoint", str(sam_file), "--device", "cpu",
                     "--out", str(out)]) == 0
        doc = json.loads(out.read_text())
        scores = [m["score"] for m in doc["masks"]]
        assert len(scores) == 3 and scores == sorted(scores, reverse=True)
        assert all(m["segmentation"]["size"] == [240, 320] for m in doc["masks"])

        single = tmp_path / "one.json"
        assert main(["segment", str(path), "--box", "10,10,100,100", "--box", "150,60,250,160",
                     "--model", spec.name, "--checkpoint", str(sam_file), "--single",
                     "--out", str(single)]) == 0
        two = json.loads(single.read_text())["masks"]
        assert len(two) == 2 and all(m["label"] is None for m in two)
        alone = []
        for i, box in enumerate(("10,10,100,100", "150,60,250,160")):
            assert main(["segment", str(path), "--box", box, "--model", spec.name,
                         "--checkpoint", str(sam_file), "--single",
                         "--out", str(tmp_path / f"{i}.json")]) == 0
            alone += json.loads((tmp_path / f"{i}.json").read_text())["masks"]
        # several boxes are several objects: each is what its box gives alone
        key = lambda m: m["segmentation"]["counts"]  # noqa: E731
        assert sorted(map(key, two)) == sorted(map(key, alone))


def test_png_and_overlay_outputs(disk_photo, tmp_path):
    path, truth = disk_photo
    png = tmp_path / "mask.png"
    assert main(["segment", str(path), "--box", "130,40,270,180", "--single",
                 "--format", "png", "--out", str(png)]) == 0
    written = np.array(Image.open(png))
    assert written.dtype == np.uint8 and set(np.unique(written)) <= {0, 255}
    assert iou(written > 0, truth) > 0.9
    overlay = tmp_path / "overlay.png"
    assert main(["segment", str(path), "--box", "130,40,270,180", "--format", "overlay",
                 "--out", str(overlay)]) == 0
    drawn = np.array(Image.open(overlay).convert("RGB")).astype(int)
    original = np.array(Image.open(path).convert("RGB")).astype(int)
    inside_changed = np.abs(drawn - original).sum(-1)[truth].mean()
    outside_changed = np.abs(drawn - original).sum(-1)[~truth].mean()
    assert inside_changed > 20 > outside_changed


def test_exif_rotated_photo_gets_upright_size_and_masks(tmp_path):
    img = np.zeros((100, 200, 3), np.uint8)  # stored landscape, shown portrait (rotate 90)
    img[10:40, 20:60] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rot.jpg"
    Image.fromarray(img).save(path, exif=exif, quality=95)
    out = tmp_path / "m.json"
    assert main(["segment", str(path), "--box", "2,2,98,198", "--single", "--out",
                 str(out)]) == 0
    doc = json.loads(out.read_text())
    assert (doc["image"]["width"], doc["image"]["height"]) == (100, 200)
    assert doc["masks"][0]["segmentation"]["size"] == [200, 100]


def test_embed_writes_the_sam2_embedding(disk_photo, tmp_path):
    path, _ = disk_photo
    ckpt = make_sam2_checkpoint(tmp_path / "sam2.1_hiera_tiny.pt")
    out = tmp_path / "e.npy"
    assert main(["embed", str(path), "--model", "sam2.1_hiera_tiny", "--checkpoint", str(ckpt),
                 "--device", "cpu", "--out", str(out)]) == 0
    assert np.load(out).shape == (1, 256, 64, 64)


@pytest.mark.parametrize(("args", "message"), [
    (["--points", "400,10"], "--points 400,10: outside the 320x240 image"),
    (["--points", "12"], "--points '12': expected X,Y numbers"),
    (["--box", "50,50,10,10"], "needs X1 > X0"),
    (["--points", "5,5", "--model", "sam_vit_b"], "samdesk models fetch sam_vit_b"),
    (["--points", "5,5", "--model", "nope"], "unknown model 'nope'"),
    (["--text", "car"], "samdesk models fetch groundingdino_swint_ogc"),
    ([], "give --points, --negative, --box or --text"),
])
def test_bad_arguments_are_one_line_errors(disk_photo, tmp_path, capsys, args, message):
    path, _ = disk_photo
    assert main(["segment", str(path), *args, "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err, err


def test_unreadable_image_names_the_file(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_text("not a png")
    assert main(["segment", str(bad), "--points", "1,1", "--out", str(tmp_path / "o.json")]) == 2
    assert "bad.png" in capsys.readouterr().err
