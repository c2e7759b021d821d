"""``samdesk batch``: a whole project labelled from a phrase, resumable, adding only."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from samdesk import masks
from samdesk.annotations import ImageStatus
from samdesk.cli import main
from samdesk.inference.engines import loading
from samdesk.project import Project
from tests.gdino_factory import install_tiny_gdino, scene_image, shared_tiny_gdino

PHRASE = "cat . dog"


@pytest.fixture
def tiny(tmp_path_factory, monkeypatch):
    tiny = shared_tiny_gdino(tmp_path_factory)
    install_tiny_gdino(monkeypatch, tiny)
    return tiny


def threshold_for_a_few(tiny, rgb):
    """A box threshold that lets 1–3 of this random model's boxes through."""
    detector = loading.load_model(tiny.spec.name, tiny.checkpoint, "cpu")
    scores = np.sort(detector.detect(rgb, PHRASE, 0.0, 0.0).scores)[::-1]
    return float((scores[2] + scores[3]) / 2)


def test_batch_adds_labelled_masks_resumes_and_keeps_a_persons_work(tiny, tmp_path, capsys):
    folder = tmp_path / "p"
    folder.mkdir()
    rgb = scene_image(120, 160, seed=3)
    for name in ("a.png", "b.png", "done.png"):
        Image.fromarray(rgb).save(folder / name)
    (folder / "broken.png").write_bytes(b"\x89PNG broken")
    threshold = threshold_for_a_few(tiny, rgb)
    mine = np.zeros((120, 160), bool)
    mine[5:20, 5:30] = True
    with Project.open(folder) as project:
        a = project.image_by_path("a.png")
        person = project.add_label("mine")
        kept = project.add_annotation(a.id, masks.encode(mine), person.id)
        project.set_status(project.image_by_path("done.png").id, ImageStatus.DONE)

    args = ["batch", str(folder), "--text", PHRASE, "--threshold", f"{threshold:.6f}",
            "--text-threshold", "0", "--detector", tiny.spec.name, "--device", "cpu"]
    assert main(args) == 0
    first = capsys.readouterr()
    assert "broken.png" in first.err
    with Project.open(folder) as project:
        added = [x for x in project.annotations() if x.id != kept.id]
        assert added, "the run added no mask"
        per_image = {project.image(x.image_id).path for x in added}
        assert per_image == {"a.png", "b.png"}  # done.png left alone, broken skipped
        names = {project.label(x.label_id).name for x in added}
        assert names and names <= {"cat", "dog", "cat dog"}
        assert np.array_equal(masks.decode(project.annotation(kept.id).rle), mine)
        assert all(x.prompts["text"] == PHRASE for x in added)
        count = len(project.annotations())

    assert main(args) == 0  # resumed run: everything already done, nothing added twice
    assert "0 masks added" in capsys.readouterr().out
    with Project.open(folder) as project:
        assert len(project.annotations()) == count


def test_batch_without_a_detector_says_what_to_fetch(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SAMDESK_MODELS", str(tmp_path / "models"))
    (tmp_path / "p").mkdir()
    assert main(["batch", str(tmp_path / "p"), "--text", "car"]) == 2
    assert "samdesk models fetch groundingdino_swint_ogc" in capsys.readouterr().err
