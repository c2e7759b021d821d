"""``--runtime`` on the commands: the runtime said once on stderr, masks within the tolerance
of torch's, a bad name one line with exit status 2."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from samdesk import masks
from samdesk.cli import main
from samdesk.inference.engines import loading
from samdesk.inference.engines.base import Point, Prompts
from samdesk.inference.engines.runtime_choice import CHOICES
from samdesk.inference.runtimes.cache import ENV_VAR
from tests.mask_compare import assert_masks_close, full_logits
from tests.model_factories import TINY_SAM, make_sam_checkpoint, registered_test_model

POINT = (200, 110)


@pytest.fixture
def tiny_sam(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "runtime-cache"))
    checkpoint = make_sam_checkpoint(tmp_path / "sam.pth", TINY_SAM)
    with registered_test_model("sam", TINY_SAM) as spec:
        yield spec.name, checkpoint


@pytest.fixture
def photo(tmp_path: Path) -> tuple[Path, np.ndarray]:
    from PIL import Image

    from tests.model_factories import textured_image

    rgb = textured_image(240, 320, seed=4)
    path = tmp_path / "photo.png"
    Image.fromarray(rgb).save(path)
    return path, rgb


def _segment(photo: Path, name: str, checkpoint: Path, out: Path, *runtime: str) -> np.ndarray:
    assert main(["segment", str(photo), "--model", name, "--checkpoint", str(checkpoint),
                 "--device", "cpu", "--points", f"{POINT[0]},{POINT[1]}", "--single",
                 *runtime, "--out", str(out)]) == 0
    (entry,) = json.loads(out.read_text())["masks"]
    return masks.decode(entry["segmentation"])


def test_segment_with_onnx_says_so_and_gives_torch_masks(tiny_sam, photo, tmp_path, capsys):
    name, checkpoint = tiny_sam
    path, rgb = photo
    ours = _segment(path, name, checkpoint, tmp_path / "onnx.json", "--runtime", "onnx")
    assert capsys.readouterr().err == f"samdesk: {name} on cpu, runtime onnx (fp32)\n"
    theirs = _segment(path, name, checkpoint, tmp_path / "torch.json", "--runtime", "torch")
    assert capsys.readouterr().err == f"samdesk: {name} on cpu, runtime torch\n"
    engine = loading.load_model(name, checkpoint, "cpu")
    prediction = engine.predict(engine.embed(rgb), Prompts(points=(Point(*POINT),)),
                                multimask=False)
    frame = engine.frame(rgb.shape[:2])
    assert ours.any()
    assert_masks_close(ours, theirs, full_logits(prediction.logits[0, 0], frame),
                       frame.threshold)


def test_a_runtime_that_falls_back_says_why_in_the_same_line(photo, tmp_path, capsys):
    path, _ = photo
    assert main(["segment", str(path), "--model", "grabcut", "--points", "200,110",
                 "--runtime", "onnx", "--out", str(tmp_path / "g.json")]) == 0
    assert capsys.readouterr().err == (
        "samdesk: grabcut on cpu, runtime torch; grabcut has no onnx runtime; using torch\n")


@pytest.mark.parametrize(("command", "out"), [(["segment", "--points", "1,1"], "s.json"),
                                              (["embed"], "e.npy")])
def test_a_bad_runtime_name_is_one_line_and_exit_2(photo, tmp_path, capsys, command, out):
    path, _ = photo
    assert main([command[0], str(path), *command[1:], "--out", str(tmp_path / out),
                 "--model", "sam_vit_b", "--runtime", "tensorrt"]) == 2
    assert capsys.readouterr().err == ("samdesk: error: --runtime tensorrt: unknown runtime; "
                                       f"choose {', '.join(CHOICES)}\n")
    assert not (tmp_path / out).exists()


def test_track_says_propagation_runs_in_torch(tmp_path, capsys):
    assert main(["track", str(tmp_path / "nowhere"), "--runtime", "onnx", "--frame", "0",
                 "--points", "1,1"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "samdesk: propagation runs in torch (the video predictor has no ONNX " \
                       "export)"
    assert main(["track", str(tmp_path / "nowhere"), "--runtime", "fast"]) == 2
    assert capsys.readouterr().err.startswith("samdesk: error: --runtime fast: unknown runtime")
