"""``samdesk batch FOLDER --from-boxes``: pending boxes become masks, resumably, adding only."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from samdesk import masks
from samdesk.cli import main
from samdesk.inference.engines import boxes as box_engine
from samdesk.project import Project
from tests.model_factories import make_sam_checkpoint, registered_test_model

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(autouse=True)
def empty_models_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMDESK_MODELS", str(tmp_path / "models"))  # grabcut is the default


def photo(seed: int) -> np.ndarray:
    """Two bright squares on a dark, noisy background: (120, 160, 3) uint8."""
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 40, (120, 160, 3), dtype=np.uint8)
    rgb[20:60, 20:70] = (230, 200, 40)
    rgb[70:110, 90:150] = (40, 180, 230)
    return rgb


BOXES = [((15, 15, 75, 65), "car"), ((85, 65, 155, 115), "boat")]


@pytest.fixture
def folder(tmp_path):
    """Three photos with two pending boxes each, a person's mask on one, and a broken file."""
    root = tmp_path / "p"
    root.mkdir()
    for i, name in enumerate(("a.png", "b.png", "c.png")):
        Image.fromarray(photo(i)).save(root / name)
    (root / "broken.png").write_bytes(b"\x89PNG broken")
    with Project.open(root) as project:
        labels = {name: project.add_label(name).id for name in ("car", "boat", "mine")}
        for name in ("a.png", "b.png", "c.png", "broken.png"):
            image = project.image_by_path(name)
            project.add_pending_boxes(image.id, [(box, labels[lab]) for box, lab in BOXES],
                                      "boxes.json")
        mine = np.zeros((120, 160), bool)
        mine[0:10, 0:30] = True
        project.add_annotation(project.image_by_path("a.png").id, masks.encode(mine),
                               labels["mine"])
    return root


def persons_masks(project):
    return {a.id: (a.label_id, a.rle["counts"], a.z) for a in project.annotations()
            if "pending_box" not in a.prompts}


def check_made(project, images=("a.png", "b.png", "c.png")):
    """Each image has a mask per box: inside its box, with its label."""
    names = {lab.id: lab.name for lab in project.labels()}
    for name in images:
        made = [a for a in project.annotations(project.image_by_path(name).id)
                if "pending_box" in a.prompts]
        assert sorted(names[a.label_id] for a in made) == ["boat", "car"]
        for layer in made:
            x0, y0, x1, y1 = layer.prompts["pending_box"]
            pixels = masks.decode(layer.rle)
            ys, xs = np.nonzero(pixels)
            assert len(xs) and xs.min() >= x0 and xs.max() < x1
            assert ys.min() >= y0 and ys.max() < y1
            assert names[layer.label_id] == dict((tuple(b), lab) for b, lab in BOXES)[
                (x0, y0, x1, y1)]


def test_grabcut_makes_a_mask_per_box_keeps_the_persons_and_the_broken_files_boxes(
        folder, capsys):
    with Project.open(folder) as project:
        before = persons_masks(project)
    assert main(["batch", str(folder), "--from-boxes"]) == 0
    out, err = capsys.readouterr()
    assert "broken.png" in err and "2 boxes kept" in err
    assert "6 masks made from boxes on 4 images" in out and "2 boxes still pending" in out
    assert "boxes: 8/8" in err  # progress over the boxes
    with Project.open(folder) as project:
        check_made(project)
        assert persons_masks(project) == before
        assert [project.image(b.image_id).path for b in project.pending_boxes()] == \
            ["broken.png", "broken.png"]
        # the car box on the first image: GrabCut finds the yellow square in it
        a = project.image_by_path("a.png").id
        car = next(x for x in project.annotations(a) if x.prompts.get("box") == [15, 15, 75, 65])
        square = np.zeros((120, 160), bool)
        square[20:60, 20:70] = True
        inter = (masks.decode(car.rle) & square).sum()
        assert inter / (masks.decode(car.rle) | square).sum() > 0.9
        assert project.undo() == "Masks from 2 boxes"  # one image's masks, one step
        assert len(project.pending_boxes()) == 4


def test_a_killed_run_is_finished_by_the_next(folder, capsys, monkeypatch):
    calls = []
    real = box_engine.segment_boxes

    def dies_on_the_second_image(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(box_engine, "segment_boxes", dies_on_the_second_image)
    assert main(["batch", str(folder), "--from-boxes"]) == 130
    with Project.open(folder) as project:
        assert len(project.pending_boxes()) == 6  # the first image's two were done
    monkeypatch.setattr(box_engine, "segment_boxes", real)
    assert main(["batch", str(folder), "--from-boxes"]) == 0
    assert "4 masks made from boxes on 3 images" in capsys.readouterr().out
    with Project.open(folder) as project:
        check_made(project)
        made = [a for a in project.annotations() if "pending_box" in a.prompts]
        assert len(made) == 6  # nothing made twice
    assert main(["batch", str(folder), "--from-boxes"]) == 0
    assert "0 masks made" in capsys.readouterr().out


def test_a_tiny_sam_embeds_each_image_once_for_all_its_boxes(folder, tmp_path, capsys,
                                                             monkeypatch):
    checkpoint = make_sam_checkpoint(tmp_path / "tiny.pth")
    with registered_test_model("sam", "tiny") as spec:
        from samdesk.inference.engines import loading

        embeds, predicts = [], []
        real_load = loading.load_model

        def counting_load(*args, **kwargs):
            engine = real_load(*args, **kwargs)
            embed, predict = engine.embed, engine.predict
            engine.embed = lambda rgb: embeds.append(1) or embed(rgb)
            engine.predict = lambda emb, prompts, *a, **k: (
                predicts.append(len(prompts.boxes)) or predict(emb, prompts, *a, **k))
            return engine

        monkeypatch.setattr(loading, "load_model", counting_load)
        with Project.open(folder) as project:
            before = persons_masks(project)
        assert main(["batch", str(folder), "--from-boxes", "--model", spec.name,
                     "--checkpoint", str(checkpoint), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert len(embeds) == 3 and predicts == [2, 2, 2]  # broken.png is never encoded
    with Project.open(folder) as project:
        made = [a for a in project.annotations() if "pending_box" in a.prompts]
        empty = int(out.split("; ")[1].split()[0])  # random weights may leave a box empty
        assert len(made) + empty == 6 and made
        assert all(a.prompts["model"] == spec.name for a in made)
        check_made_some = {project.image(a.image_id).path for a in made}
        assert check_made_some <= {"a.png", "b.png", "c.png"}
        for layer in made:
            x0, y0, x1, y1 = layer.prompts["pending_box"]
            ys, xs = np.nonzero(masks.decode(layer.rle))
            assert xs.min() >= x0 and xs.max() < x1 and ys.min() >= y0 and ys.max() < y1
        assert persons_masks(project) == before


def test_no_pending_boxes_says_so(tmp_path, capsys):
    root = tmp_path / "q"
    root.mkdir()
    Image.fromarray(photo(0)).save(root / "a.png")
    assert main(["batch", str(root), "--from-boxes"]) == 0
    assert "no pending boxes" in capsys.readouterr().out


def test_text_and_from_boxes_are_one_or_the_other(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["batch", str(tmp_path), "--from-boxes", "--text", "car"])
    assert exited.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
