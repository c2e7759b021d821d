"""``--runtime auto`` on a CPU: ONNX fp32 after a probe that matched torch, torch after one
that did not, the verdict kept beside the graphs and read on later starts.

The probe's encode times are fixed (tests never assert on time): ONNX is made
"faster" so that only the masks decide.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from samdesk.errors import EngineError
from samdesk.inference.engines import runtime_choice
from samdesk.inference.engines.base import Embedding
from samdesk.inference.runtimes import verdicts
from tests.model_factories import TINY_SAM, make_sam_checkpoint, registered_test_model


@pytest.fixture(autouse=True)
def auto_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite runs torch by default (tests/conftest.py); here the default is auto."""
    monkeypatch.delenv(runtime_choice.ENV_VAR, raising=False)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sam_checkpoint(tmp_path_factory.mktemp("choice") / "sam.pth", TINY_SAM)


@pytest.fixture
def model() -> Iterator[str]:
    with registered_test_model("sam", TINY_SAM) as spec:
        yield spec.name


@pytest.fixture
def fixed_times(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Torch encodes take 2 s, ONNX 1 s; the runtimes timed, in order."""
    timed: list[str] = []

    def timed_embed(engine, image):  # noqa: ANN001, ANN202
        timed.append(engine.runtime)
        return engine.embed(image), 2.0 if engine.runtime == "torch" else 1.0

    monkeypatch.setattr(runtime_choice, "timed_embed", timed_embed)
    return timed


def _probe_file(cache_folder: Path) -> Path:
    found = list(cache_folder.glob("sam-*/probe.json"))
    assert len(found) == 1, found
    return found[0]


def test_auto_on_a_cpu_picks_onnx_after_a_matching_probe(
        model: str, checkpoint: Path, runtime_cache: Path, fixed_times: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    steps: list[tuple[int, int, str]] = []
    engine = runtime_choice.load_engine(model, checkpoint, "cpu",
                                        progress=lambda *step: steps.append(step))
    assert (engine.runtime, engine.runtime_note) == ("onnx", "")
    assert engine.runtime_reason.startswith("auto: ONNX fp32 matched torch on the probe (IoU")
    line = runtime_choice.runtime_line(model, engine)
    assert line.startswith(f"samdesk: {model} on cpu, runtime onnx (fp32); auto: ONNX fp32")
    # the verdict lies beside the graphs, keyed by the same checkpoint hash
    probe = _probe_file(runtime_cache)
    assert list(probe.parent.glob("*.onnx"))
    stored = json.loads(probe.read_text())["onnx"]
    assert stored["iou"] >= verdicts.MIN_IOU and stored["far"] == 0
    assert stored["torch_s"] / stored["runtime_s"] == 2.0
    assert {what for _, _, what in steps} >= {
        "preparing ONNX fp32 (exported on a checkpoint's first use)",
        "comparing ONNX fp32 with torch (first use of this checkpoint)"}
    assert verdicts.known_verdicts(checkpoint, "sam")["onnx"].matched
    engine.close()
    # a later start reads the verdict: no probe, same choice
    fixed_times.clear()
    again = runtime_choice.load_engine(model, checkpoint, "cpu")
    assert fixed_times == [] and again.runtime == "onnx"
    again.close()
    # graphs that no longer start: torch, with the runtime's own line, not the probe's
    from samdesk.inference.runtimes import onnx_encoder

    def broken(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise onnx_encoder.RuntimeFailure("ONNX export of chunk 'neck' failed: no such op")

    monkeypatch.setattr(onnx_encoder, "prepare", broken)
    fallen = runtime_choice.load_engine(model, checkpoint, "cpu")
    assert fallen.runtime == "torch"
    assert fallen.runtime_note == "ONNX export of chunk 'neck' failed: no such op; using torch"
    assert runtime_choice.runtime_line(model, fallen) == (
        f"samdesk: {model} on cpu, runtime torch; {fallen.runtime_note}")


def test_a_probe_that_does_not_match_makes_auto_pick_torch_with_its_line(
        model: str, checkpoint: Path, runtime_cache: Path, fixed_times: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from samdesk.inference.engines.sam import SamEngine

    embed = SamEngine.embed

    def perturbed(self, rgb: np.ndarray) -> Embedding:  # noqa: ANN001
        found = embed(self, rgb)
        if self.runtime == "torch":  # every exported runtime is perturbed
            return found
        rng = np.random.default_rng(0)
        tensors = {name: (value + rng.normal(0, 3.0, value.shape)).astype(np.float32)
                   for name, value in found.tensors.items()}
        return Embedding(found.model_id, found.image_size, tensors)

    monkeypatch.setattr(SamEngine, "embed", perturbed)
    engine = runtime_choice.load_engine(model, checkpoint, "cpu")
    assert engine.runtime == "torch"
    assert engine.runtime_note.startswith("auto: ONNX fp32 did not match torch on the probe")
    assert engine.runtime_note.endswith("; using torch")
    line = runtime_choice.runtime_line(model, engine)
    assert line.startswith(f"samdesk: {model} on cpu, runtime torch; auto: ONNX fp32 did not")
    assert "\n" not in line
    stored = json.loads(_probe_file(runtime_cache).read_text())["onnx"]
    assert stored["far"] > 0 or stored["iou"] < verdicts.MIN_IOU
    # the next start reads the verdict and loads torch without exporting or probing
    fixed_times.clear()
    assert runtime_choice.load_engine(model, checkpoint, "cpu").runtime == "torch"
    assert fixed_times == []


def test_int8_is_never_auto_but_picked_it_runs_with_its_measured_cost(
        model: str, checkpoint: Path, runtime_cache: Path, fixed_times: list[str]) -> None:
    engine = runtime_choice.load_engine(model, checkpoint, "cpu", runtime="onnx-int8")
    assert (engine.runtime, engine.runtime_note) == ("onnx-int8", "")
    known = verdicts.known_verdicts(checkpoint, "sam")
    assert set(known) == {"onnx-int8"}  # probed for its cost; fp32 never asked for
    assert known["onnx-int8"].cost().startswith("IoU ")
    engine.close()
    assert runtime_choice.load_engine(model, checkpoint, "cpu").runtime == "onnx"


def test_a_torch_choice_never_exports(model: str, checkpoint: Path,
                                      runtime_cache: Path) -> None:
    engine = runtime_choice.load_engine(model, checkpoint, "cpu", runtime="torch")
    assert (engine.runtime, engine.runtime_note, engine.runtime_reason) == ("torch", "", "")
    assert not list(runtime_cache.glob("sam-*"))


def test_an_unknown_runtime_is_one_line() -> None:
    names = ", ".join(runtime_choice.CHOICES)
    assert names.startswith("auto, torch, onnx, onnx-int8")
    with pytest.raises(EngineError, match=rf"^--runtime fast: unknown runtime; choose {names}$"):
        runtime_choice.load_engine("grabcut", None, "cpu", runtime="fast")


def test_a_bad_default_runtime_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(runtime_choice.ENV_VAR, "gpu")
    with pytest.raises(EngineError, match=r"^\$SAMDESK_RUNTIME gpu: unknown runtime"):
        runtime_choice.load_engine("grabcut", None, "cpu")


def test_grabcut_loads_as_ever_under_auto() -> None:
    engine = runtime_choice.load_engine("grabcut", None, "cpu")
    assert getattr(engine, "runtime", "torch") == "torch"
