"""``--runtime auto`` with OpenVINO installed: the fastest fp32 runtime whose probe matched
wins, bf16 is never auto, and only one exported candidate is alive at a time.

The probe's encode times are fixed (tests never assert on time): torch 2 s, ONNX
1.5 s, OpenVINO 1 s, so only the masks and these figures decide.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from samdesk.inference import runtimes
from samdesk.inference.engines import loading, runtime_choice
from samdesk.inference.runtimes import verdicts
from tests.model_factories import TINY_SAM, make_sam_checkpoint, registered_test_model

pytestmark = pytest.mark.skipif(not {"onnx", "openvino"} <= set(runtimes.available()),
                                reason="onnxruntime and openvino are both needed")
TIMES = {"torch": 2.0, "onnx": 1.5, "openvino": 1.0}


def test_auto_picks_openvino_when_it_matched_and_was_fastest_one_candidate_at_a_time(
        tmp_path: Path, runtime_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(runtime_choice.ENV_VAR, raising=False)
    monkeypatch.setattr(runtime_choice, "timed_embed",
                        lambda engine, image: (engine.embed(image), TIMES[engine.runtime]))
    made: list[Any] = []
    most_alive = [0]
    load_model = loading.load_model

    def counted(*args: Any, **kwargs: Any) -> Any:
        alive = [e for e in made if e._encoder is not None]
        most_alive[0] = max(most_alive[0], len(alive) + (kwargs.get("runtime") != "torch"))
        made.append(load_model(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(loading, "load_model", counted)
    checkpoint = make_sam_checkpoint(tmp_path / "sam.pth", TINY_SAM)
    with registered_test_model("sam", TINY_SAM) as spec:
        engine = runtime_choice.load_engine(spec.name, checkpoint, "cpu")
        assert (engine.runtime, engine.runtime_note) == ("openvino", "")
        assert engine.runtime_reason.startswith(
            "auto: OpenVINO fp32 matched torch on the probe (IoU")
        assert most_alive[0] == 1, "two exported candidates were alive at once"
        known = verdicts.known_verdicts(checkpoint, "sam")
        assert set(known) == {"onnx", "openvino"}  # bf16 is never probed by auto
        assert all(v.matched for v in known.values())
        engine.close()
        again = runtime_choice.load_engine(spec.name, checkpoint, "cpu")  # the verdicts read
        assert again.runtime == "openvino"
        again.close()
