"""`samdesk segment --text` and `samdesk batch --text` without the text extra: exit 2
with one line saying `pip install samdesk[text]` and what it costs; points and boxes
still segment (GrabCut needs no extra), and the project is left as it was."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from PIL import Image

from samdesk.cli import main
from samdesk.inference.engines.packages import TEXT_EXTRA
from samdesk.project import Project

LINE = TEXT_EXTRA + "; groundingdino-py is not installed"


@pytest.fixture
def base_install(tmp_path, monkeypatch):
    """No groundingdino-py, no checkpoint: what `pip install samdesk` alone gives."""
    monkeypatch.setitem(sys.modules, "groundingdino", None)
    monkeypatch.setenv("SAMDESK_MODELS", str(tmp_path / "models"))


@pytest.fixture
def photo(tmp_path):
    rgb = np.full((60, 80, 3), 30, np.uint8)
    rgb[20:40, 30:50] = (230, 200, 40)
    path = tmp_path / "p" / "photo.png"
    path.parent.mkdir()
    Image.fromarray(rgb).save(path)
    return path


def one_line(err: str) -> str:
    err = err.strip()
    assert err.count("\n") == 0, err
    return err


def test_segment_text_names_the_extra(base_install, photo, tmp_path, capsys):
    out = tmp_path / "x.json"
    assert main(["segment", str(photo), "--text", "car", "--out", str(out)]) == 2
    err = one_line(capsys.readouterr().err)
    assert LINE in err and "models fetch" not in err
    assert not out.exists()


def test_segment_with_a_box_works_without_the_extra(base_install, photo, tmp_path):
    out = tmp_path / "m.json"
    assert main(["segment", str(photo), "--box", "25,15,55,45", "--single",
                 "--out", str(out)]) == 0
    assert len(json.loads(out.read_text())["masks"]) == 1


def test_batch_text_names_the_extra_and_adds_nothing(base_install, photo, capsys):
    folder = photo.parent
    with Project.open(folder) as project:
        before = len(project.annotations())
    assert main(["batch", str(folder), "--text", "car", "--device", "cpu"]) == 2
    assert LINE in one_line(capsys.readouterr().err)
    with Project.open(folder) as project:
        assert len(project.annotations()) == before == 0


def test_a_servers_detector_needs_no_local_extra(base_install, photo, tmp_path, capsys):
    # nothing listens on port 1: the run fails on the server, never on the local extra
    code = main(["segment", str(photo), "--text", "car", "--server", "http://127.0.0.1:1",
                 "--detector", "groundingdino_swint_ogc", "--out", str(tmp_path / "x.json")])
    err = one_line(capsys.readouterr().err)
    assert code == 2 and "samdesk[text]" not in err and "127.0.0.1:1" in err, err


def test_fetching_the_detector_first_says_it_cannot_run_without_the_extra(
        base_install, tmp_path, capsys):
    # said before the download starts (here one that fails at once: nothing listens)
    code = main(["models", "fetch", "groundingdino_swint_ogc",
                 "--url", "http://127.0.0.1:1/groundingdino_swint_ogc.pth"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert lines[0] == f"note: groundingdino_swint_ogc: {LINE}"
