"""A damaged checkpoint is one whole line naming the model and the file, never a traceback."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from samdesk.cli import main
from samdesk.inference.engines.base import EngineError
from samdesk.inference.engines.device import read_checkpoint


@pytest.mark.parametrize("content", [b"\x80", b"x", b"", b"PK\x03\x04", b"\x80\x02}q"])
def test_a_few_bytes_are_one_line_naming_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.pt"
    path.write_bytes(content)
    with pytest.raises(EngineError) as info:
        read_checkpoint(path, "sam2.1_hiera_tiny")
    message = str(info.value)
    assert message.startswith(f"sam2.1_hiera_tiny: {path} is not a readable checkpoint")
    unit = "byte" if len(content) == 1 else "bytes"
    assert f"({len(content)} {unit};" in message and "\n" not in message


def test_the_reason_is_the_unpicklers_not_torchs_advice(tmp_path: Path) -> None:
    path = tmp_path / "code.pt"
    path.write_bytes(pickle.dumps(print))  # a pickle that would run code: refused
    with pytest.raises(EngineError) as info:
        read_checkpoint(path, "sam_vit_b")
    message = str(info.value)
    assert "weights_only" not in message and "In PyTorch 2.6" not in message
    assert message.endswith(")") and "\n" not in message


def test_a_long_reason_is_cut_at_a_word(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    words = " ".join(f"word{i}" for i in range(80))

    def failing_load(*args: object, **kwargs: object) -> None:
        raise RuntimeError(words)

    monkeypatch.setattr(torch, "load", failing_load)
    path = tmp_path / "long.pt"
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 60)
    with pytest.raises(EngineError) as info:
        read_checkpoint(path, "sam_vit_b")
    reason = str(info.value).split("corrupt file: ", 1)[1].removesuffix(")")
    assert reason.endswith("…")
    assert words.startswith(reason.removesuffix("…")) and (reason[:-1] + " ") in words + " "


def test_segment_with_a_one_byte_checkpoint_is_one_line(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "one.pt"
    path.write_bytes(b"\x80")
    code = main(["segment", "resources/sample/scene1.jpg", "--model", "sam2.1_hiera_tiny",
                 "--checkpoint", str(path), "--points", "144,295", "--device", "cpu",
                 "--out", str(tmp_path / "x.json")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"samdesk: error: sam2.1_hiera_tiny: {path} is not a readable")
