"""``samdesk segment`` and ``samdesk embed`` as a person runs them."""

from __future__ import annotations

import io
import json

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from samdesk import masks
from samdesk.cli import main
from samdesk.images import load_rgb
from samdesk.inference.engines.base import Prompts
from samdesk.inference.engines.loading import load_model
from tests.mask_compare import SCORE_TOL, assert_masks_close, full_logits
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
        # several boxes are several objects: each is what its box gives alone, as a
        # person sees it (batched and single decoding are two float paths)
        engine = load_model(spec.name, sam_file, "cpu")
        embedding = engine.embed(load_rgb(path))
        frame = engine.frame(embedding.image_size)
        batched_masks = [masks.decode(m["segmentation"]) for m in two]  # best first
        for single_box, box in zip(alone, ((10, 10, 100, 100), (150, 60, 250, 160)), strict=True):
            mine = masks.decode(single_box["segmentation"])
            overlap = [int((mine & m).sum()) for m in batched_masks]
            batched = two[int(np.argmax(overlap))]
            logits = engine.predict(embedding, Prompts(boxes=(box,)), multimask=False).logits
            assert_masks_close(masks.decode(batched["segmentation"]), mine,
                               full_logits(logits[0, 0], frame), frame.threshold)
            assert batched["score"] == pytest.approx(single_box["score"], abs=SCORE_TOL)


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


PNG_MAGIC, JPEG_MAGIC = b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"


def test_without_format_the_out_extension_chooses_it(disk_photo, tmp_path, capsys):
    path, truth = disk_photo
    box = ["--box", "130,40,270,180", "--single"]
    png, jpg, js = tmp_path / "m.png", tmp_path / "m.jpg", tmp_path / "m.json"
    for out in (png, jpg, js):
        assert main(["segment", str(path), *box, "--out", str(out)]) == 0
    assert png.read_bytes().startswith(PNG_MAGIC)
    assert iou(np.array(Image.open(png)) > 0, truth) > 0.9
    assert jpg.read_bytes().startswith(JPEG_MAGIC)  # an overlay: the photo with its mask
    assert np.array(Image.open(jpg)).shape == (240, 320, 3)
    assert json.loads(js.read_text())["masks"]
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == [str(png), str(jpg), str(js)]


def test_printed_lines_name_every_png_written(disk_photo, tmp_path, capsys):
    path, _ = disk_photo
    out = tmp_path / "a.png"
    assert main(["segment", str(path), "--box", "10,10,100,100", "--box", "150,60,250,160",
                 "--single", "--format", "png", "--out", str(out)]) == 0
    written = sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".png")
    assert written == ["a-0.png", "a-1.png"]
    printed = [line.split(":")[0] for line in capsys.readouterr().out.splitlines()]
    assert printed == [str(tmp_path / "a-0.png"), str(tmp_path / "a-1.png")]


@pytest.mark.parametrize("fmt", [[], ["--format", "overlay"]])
def test_an_out_extension_no_format_can_have_is_one_line(disk_photo, tmp_path, capsys, fmt):
    path, _ = disk_photo
    out = tmp_path / "x.xyz"
    assert main(["segment", str(path), "--points", "200,110", *fmt, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("samdesk: error: --out") and "x.xyz" in err
    assert not out.exists()


def test_grabcut_negative_click_is_answered_and_keeps_the_click(tmp_path, capsys):
    sample = "resources/sample/scene1.jpg"
    out = tmp_path / "x.json"
    assert main(["segment", sample, "--model", "grabcut", "--points", "144,295",
                 "--negative", "144,339", "--out", str(out)]) == 0
    found = [masks.decode(m["segmentation"]) for m in json.loads(out.read_text())["masks"]]
    assert found and all(m[295, 144] and not m[339, 144] for m in found)
    assert len({m.tobytes() for m in found}) == len(found)  # every candidate is distinct
    assert capsys.readouterr().err == ""


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_model_load_and_encode_show_progress_on_a_terminal(disk_photo, tmp_path, monkeypatch):
    path, _ = disk_photo
    ckpt = make_sam2_checkpoint(tmp_path / "sam2.1_hiera_tiny.pt")
    terminal = FakeTerminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert main(["segment", str(path), "--model", "sam2.1_hiera_tiny", "--checkpoint",
                 str(ckpt), "--device", "cpu", "--points", "200,110",
                 "--out", str(tmp_path / "m.json")]) == 0
    shown = terminal.getvalue()
    lines = shown.replace("\r", "\n").splitlines()
    assert any(line.startswith("samdesk: loading sam2.1_hiera_tiny") for line in lines)
    assert any(line.startswith("samdesk: encoding disk.jpg") for line in lines)
    assert shown.endswith("\n")  # the terminal's prompt comes back on a line of its own


def test_no_progress_lines_when_stderr_is_not_a_terminal(disk_photo, tmp_path, capsys):
    path, _ = disk_photo
    ckpt = make_sam2_checkpoint(tmp_path / "sam2.1_hiera_tiny.pt")
    assert main(["embed", str(path), "--model", "sam2.1_hiera_tiny", "--checkpoint", str(ckpt),
                 "--device", "cpu", "--out", str(tmp_path / "e.npy")]) == 0
    # the runtime it ran, once; no progress line
    assert capsys.readouterr().err == "samdesk: sam2.1_hiera_tiny on cpu, runtime torch\n"


def test_a_failed_step_leaves_only_the_error_line_on_a_terminal(disk_photo, tmp_path,
                                                                monkeypatch):
    path, _ = disk_photo
    terminal = FakeTerminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert main(["segment", str(path), "--model", "sam_vit_b", "--points", "5,5",
                 "--out", str(tmp_path / "m.json")]) == 2
    screen = terminal.getvalue().split("\r")[-1]  # what is left where the live line was
    assert screen.startswith("samdesk: error: model sam_vit_b is not installed")
    assert screen.count("\n") == 1
