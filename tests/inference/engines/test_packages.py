"""The text detector is an extra: without it (or with a transformers it cannot run on)
loading GroundingDINO is one line saying `pip install samdesk[text]` and what that
costs, said before any checkpoint is looked for; the other families need nothing."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from samdesk.inference.engines import loading, packages
from samdesk.inference.engines.base import EngineError, Prompts
from samdesk.inference.models import registry


@pytest.fixture
def no_text_extra(monkeypatch):
    """groundingdino-py as if it were not installed (an import of it fails)."""
    monkeypatch.setitem(sys.modules, "groundingdino", None)


@pytest.fixture
def empty_models(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMDESK_MODELS", str(tmp_path / "models"))
    return tmp_path / "models"


def test_without_the_extra_the_detector_names_the_extra_not_a_checkpoint(
        no_text_extra, empty_models):
    with pytest.raises(EngineError) as caught:
        loading.load_model("groundingdino_swint_ogc")
    message = str(caught.value)
    assert message == packages.TEXT_EXTRA + "; groundingdino-py is not installed"
    assert "pip install samdesk[text]" in message and "supervision 0.6.0" in message
    assert "\n" not in message and "models fetch" not in message


def test_an_installed_checkpoint_does_not_hide_the_missing_extra(
        no_text_extra, empty_models, monkeypatch):
    spec = registry.ModelSpec("gdino_here", "groundingdino", registry.DETECTOR, "GDINO here",
                              config="GroundingDINO_SwinT_OGC", filename="gdino_here.pth")
    monkeypatch.setitem(registry.MODELS, spec.name, spec)
    empty_models.mkdir()
    (empty_models / spec.filename).write_bytes(b"not read: the extra is checked first")
    with pytest.raises(EngineError, match=r"pip install samdesk\[text\]"):
        loading.load_model(spec.name)


def test_transformers_5_is_named_with_its_version(monkeypatch, empty_models):
    real = packages.installed_version
    monkeypatch.setattr(packages, "installed_version",
                        lambda dist: "5.24.0" if dist == "transformers" else real(dist))
    assert packages.missing("groundingdino") == (packages.TEXT_EXTRA
                                                 + "; transformers 5.24.0 is installed")
    with pytest.raises(EngineError, match="transformers 5.24.0 is installed"):
        loading.load_model("groundingdino_swint_ogc")


def test_both_missing_are_named_in_one_line(no_text_extra, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    line = packages.missing("groundingdino")
    assert line is not None and "\n" not in line
    assert line.endswith("groundingdino-py is not installed, transformers is not installed")


def test_the_test_environment_has_the_text_extra():
    # the test extra pulls in samdesk[text], so CI runs the GroundingDINO tests
    assert packages.missing("groundingdino") is None


def test_grabcut_sam_and_sam2_need_no_extra(no_text_extra, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    monkeypatch.setitem(sys.modules, "supervision", None)
    for family in ("grabcut", "sam", "sam2"):
        assert packages.missing(family) is None
    engine = loading.load_model("grabcut")
    rgb = np.zeros((60, 80, 3), np.uint8)
    rgb[20:40, 30:50] = 220
    embedding = engine.embed(rgb)
    prediction = engine.predict(embedding, Prompts(boxes=((25.0, 15.0, 55.0, 45.0),)),
                                multimask=False)
    assert prediction.masks[0, 0, 30, 40] and not prediction.masks[0, 0, 2, 2]
