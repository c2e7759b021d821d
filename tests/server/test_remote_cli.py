"""``samdesk segment|embed --server URL``: the same files as a local run, one line when the
server is gone."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from samdesk.cli import main
from tests.model_factories import textured_image
from tests.server.remote_fixtures import URL, served_sam


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(textured_image(200, 280, seed=4), cv2.COLOR_RGB2BGR))
    return path


def test_segment_with_server_writes_the_same_json_as_local(tmp_path: Path, photo: Path) -> None:
    with served_sam(tmp_path) as served:
        prompts = ["--points", "140,100", "--negative", "30,30", "--box", "40,30,250,180"]
        local, far = tmp_path / "local.json", tmp_path / "server.json"
        assert main(["segment", str(photo), *prompts, "--model", served.model,
                     "--checkpoint", str(served.checkpoint), "--device", "cpu",
                     "--out", str(local)]) == 0
        assert main(["segment", str(photo), *prompts, "--server", URL, "--model", served.model,
                     "--out", str(far)]) == 0
        assert far.read_text() == local.read_text()
        assert served.requests["POST images"] == 1


def test_segment_with_server_and_no_model_takes_what_the_server_serves(
        tmp_path: Path, photo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with served_sam(tmp_path) as served:
        out = tmp_path / "m.png"
        assert main(["segment", str(photo), "--points", "140,100", "--single", "--server", URL,
                     "--out", str(out)]) == 0
        assert served.requests["POST predict"] == 1
        assert "mask of object 0" in capsys.readouterr().out


def test_embed_with_server_saves_the_local_embedding(tmp_path: Path, photo: Path) -> None:
    with served_sam(tmp_path) as served:
        local, far = tmp_path / "local.npy", tmp_path / "server.npy"
        assert main(["embed", str(photo), "--model", served.model, "--checkpoint",
                     str(served.checkpoint), "--device", "cpu", "--out", str(local)]) == 0
        assert main(["embed", str(photo), "--server", URL, "--model", served.model,
                     "--out", str(far)]) == 0
        assert np.array_equal(np.load(far), np.load(local))


def test_a_server_that_is_not_there_is_one_line_and_exit_2(
        tmp_path: Path, photo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["segment", str(photo), "--points", "10,10", "--server", "http://127.0.0.1:9",
                 "--model", "sam_vit_b", "--out", str(tmp_path / "m.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("samdesk: error: server http://127.0.0.1:9: cannot connect")
    assert not (tmp_path / "m.json").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--server", "gpu-box:9001"], "--server gpu-box:9001: give an http:// or https:// URL"),
    (["--server", URL, "--model", "sam_vit_b", "--checkpoint", "x.pth"],
     "--server runs the server's own checkpoints"),
])
def test_bad_server_arguments_are_one_line(tmp_path: Path, photo: Path,
                                           capsys: pytest.CaptureFixture[str],
                                           args: list[str], message: str) -> None:
    (tmp_path / "x.pth").write_bytes(b"x")
    args = [str(tmp_path / a) if a == "x.pth" else a for a in args]
    code = main(["segment", str(photo), "--points", "10,10", *args,
                 "--out", str(tmp_path / "m.json")])
    assert code == 2 and message in capsys.readouterr().err


def test_batch_with_server_adds_the_masks_a_local_batch_adds(
        tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    from samdesk import masks
    from samdesk.project import Project
    from tests.gdino_factory import install_tiny_gdino, scene_image, shared_tiny_gdino

    tiny = shared_tiny_gdino(tmp_path_factory)
    install_tiny_gdino(monkeypatch, tiny)
    folders = [tmp_path / "local", tmp_path / "server"]
    for folder in folders:
        folder.mkdir()
        for i in range(2):
            Image.fromarray(scene_image(120, 160, seed=3 + i)).save(folder / f"{i}.png")
    text = ["--text", "cat . dog", "--threshold", "0.05", "--text-threshold", "0"]
    with served_sam(tmp_path / "srv", also={tiny.spec.name: tiny.checkpoint}) as served:
        assert main(["batch", str(folders[0]), *text, "--model", served.model, "--checkpoint",
                     str(served.checkpoint), "--detector", tiny.spec.name,
                     "--device", "cpu"]) == 0
        assert main(["batch", str(folders[1]), *text, "--server", URL, "--model",
                     served.model, "--detector", tiny.spec.name]) == 0
        assert served.requests["POST images"] == 2  # each file once, for both models
    found = []
    for folder in folders:
        with Project.open(folder) as project:
            found.append(sorted((project.image(a.image_id).path, project.label(a.label_id).name,
                                 masks.decode(a.rle).tobytes()) for a in project.annotations()))
    assert found[0] and found[1] == found[0]
