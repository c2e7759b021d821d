"""The GroundingDINO detector against ``groundingdino.util.inference`` on the same weights.

A small random-weight GroundingDINO (tests/gdino_factory.py) is saved like
the official checkpoint and loaded through ``loading.load_model``; the
reference is the library's ``load_image`` + ``predict`` on the in-memory
model the checkpoint was saved from.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from groundingdino.util.inference import load_image, predict
from PIL import Image
from torchvision.ops import box_convert

from samdesk.inference.engines import loading
from samdesk.inference.engines.base import Detections, EngineError
from samdesk.inference.engines.groundingdino import (
    GroundingDinoDetector,
    normalise_caption,
    preprocess,
)
from samdesk.inference.models import registry
from tests.gdino_factory import TinyGdino, install_tiny_gdino, scene_image, shared_tiny_gdino

CAPTION = "Cat. red car. Dog"
SPECIAL = {"[CLS]", "[SEP]", "[PAD]"}
# (height, width): landscape 4:3 (the model sees 800 x 1066) and a tall image
IMAGES = {"landscape": (1500, 2000), "tall": (1200, 300)}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyGdino:
    return shared_tiny_gdino(tmp_path_factory)


@pytest.fixture(scope="module")
def detector(tiny: TinyGdino) -> Iterator[GroundingDinoDetector]:
    with pytest.MonkeyPatch.context() as mp:
        install_tiny_gdino(mp, tiny)
        yield loading.load_model(tiny.spec.name, tiny.checkpoint, "cpu")


@pytest.fixture(scope="module")
def saved_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("gdino_images")
    paths = {}
    for seed, (name, (height, width)) in enumerate(IMAGES.items()):
        paths[name] = folder / f"{name}.png"
        Image.fromarray(scene_image(height, width, seed)).save(paths[name], compress_level=1)
    return paths


def split_threshold(values: np.ndarray) -> float:
    """A threshold between two distinct values near the middle of ``values``.

    Picks the widest gap between the 30th and 70th percentile so that the
    comparison is not decided by rounding.
    """
    ordered = np.unique(values.astype(np.float64))
    lo, hi = int(len(ordered) * 0.3), max(int(len(ordered) * 0.7), int(len(ordered) * 0.3) + 1)
    gaps = ordered[lo + 1:hi + 1] - ordered[lo:hi]
    k = lo + int(np.argmax(gaps))
    return float((ordered[k] + ordered[k + 1]) / 2)


def reference_detections(model: torch.nn.Module, image: torch.Tensor, size: tuple[int, int],
                         box_threshold: float, text_threshold: float) -> Detections:
    """``predict``'s result as pixel XYXY (clipped), best first, phrases without specials."""
    boxes, scores, phrases = predict(model, image, CAPTION, box_threshold, text_threshold,
                                     device="cpu")
    height, width = size
    xyxy = box_convert(boxes * torch.tensor([width, height, width, height]), "cxcywh", "xyxy")
    xyxy = xyxy.numpy()
    xyxy[:, 0::2] = xyxy[:, 0::2].clip(0, width)
    xyxy[:, 1::2] = xyxy[:, 1::2].clip(0, height)
    order = np.argsort(-scores.numpy(), kind="stable")
    clean = [" ".join(w for w in phrases[i].split() if w not in SPECIAL) for i in order]
    return Detections(xyxy[order], clean, scores.numpy()[order])


@pytest.mark.parametrize("size", [(3000, 4000), (4000, 3000), (1200, 300), (333, 1333),
                                  (800, 1000), (481, 641)])
def test_input_tensor_is_the_reference_transform(tmp_path: Path, size: tuple[int, int]) -> None:
    rgb = scene_image(*size, seed=sum(size))
    path = tmp_path / "image.png"
    Image.fromarray(rgb).save(path, compress_level=1)
    source, expected = load_image(str(path))
    assert np.array_equal(source, rgb)
    got = preprocess(rgb)
    assert got.shape == expected.shape
    assert torch.equal(got, expected)


@pytest.mark.parametrize("kind", list(IMAGES))
def test_detect_matches_reference_predict(
    tiny: TinyGdino, detector: GroundingDinoDetector, saved_images: dict[str, Path], kind: str
) -> None:
    rgb, image = load_image(str(saved_images[kind]))
    with torch.no_grad():
        logits = tiny.model(image[None], captions=[CAPTION.lower() + "."])["pred_logits"]
    token_scores = logits[0].sigmoid().numpy()
    best = token_scores.max(axis=1)
    box_threshold = split_threshold(best)
    kept = token_scores[best > box_threshold]
    n_tokens = len(detector.tokenizer(normalise_caption(CAPTION))["input_ids"])
    text_threshold = split_threshold(kept[:, 1:n_tokens - 1])

    expected = reference_detections(tiny.model, image, rgb.shape[:2], box_threshold,
                                    text_threshold)
    got = detector.detect(rgb, CAPTION, box_threshold, text_threshold)

    assert 0 < len(got) < len(best)
    assert len(got) == len(expected)
    assert got.boxes.dtype == np.float32 and got.boxes.shape == (len(got), 4)
    assert got.scores.dtype == np.float32
    np.testing.assert_allclose(got.scores, expected.scores, rtol=0, atol=1e-5)
    np.testing.assert_allclose(got.boxes, expected.boxes, rtol=0, atol=0.05)
    assert got.phrases == expected.phrases
    assert any(got.phrases), "no phrase passed the text threshold"
    assert set(got.phrases) != {"cat red car dog"}, "every token passed the text threshold"
    height, width = rgb.shape[:2]
    assert (got.boxes[:, 2] <= width).all() and (got.boxes[:, 3] <= height).all()
    assert (got.boxes[:, :2] >= 0).all() and (got.boxes[:, 2:] > got.boxes[:, :2]).all()
    assert (np.diff(got.scores) <= 0).all()


def test_nothing_above_a_high_threshold_is_an_empty_result(
    detector: GroundingDinoDetector,
) -> None:
    rgb = scene_image(*IMAGES["tall"], seed=5)
    everything = detector.detect(rgb, CAPTION, box_threshold=0.0, text_threshold=0.25)
    assert len(everything) > 0
    ceiling = min(1.0, float(everything.scores.max()) + 1e-6)
    found = detector.detect(rgb, CAPTION, box_threshold=ceiling, text_threshold=0.25)
    assert len(found) == 0
    assert found.boxes.shape == (0, 4) and found.scores.shape == (0,)
    assert found.phrases == []


@pytest.mark.parametrize("text", ["", "   ", " . ", "\n"])
def test_empty_text_is_refused(detector: GroundingDinoDetector, text: str) -> None:
    with pytest.raises(EngineError, match="empty"):
        detector.detect(scene_image(60, 80), text)


def test_caption_is_lowercased_and_ends_with_a_period() -> None:
    assert normalise_caption("  Cat. DOG  ") == "cat. dog ."
    assert normalise_caption("a red car.") == "a red car."


def test_bad_thresholds_and_images_are_refused(detector: GroundingDinoDetector) -> None:
    rgb = scene_image(60, 80)
    with pytest.raises(EngineError, match="box_threshold"):
        detector.detect(rgb, "cat", box_threshold=1.5)
    with pytest.raises(EngineError, match="text_threshold"):
        detector.detect(rgb, "cat", text_threshold=-0.1)
    with pytest.raises(EngineError, match="uint8"):
        detector.detect(rgb.astype(np.float32), "cat")


def test_missing_tokenizer_names_the_fetch_command(
    tiny: TinyGdino, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_tiny_gdino(monkeypatch, tiny)
    monkeypatch.setenv("SAMDESK_MODELS", str(tmp_path))
    with pytest.raises(EngineError) as info:
        loading.load_model(tiny.spec.name, tiny.checkpoint)
    message = str(info.value)
    assert "samdesk models fetch groundingdino_swint_ogc" in message
    assert str(tmp_path / "bert-base-uncased" / "vocab.txt") in message
    assert "\n" not in message


def test_checkpoint_that_does_not_fit_the_config_is_named(
    tiny: TinyGdino, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_tiny_gdino(monkeypatch, tiny)
    swint = registry.MODELS["groundingdino_swint_ogc"]
    with pytest.raises(EngineError) as info:
        loading.load_model(swint.name, tiny.checkpoint)
    message = str(info.value)
    assert str(tiny.checkpoint) in message and "GroundingDINO_SwinT_OGC" in message
    assert "missing weight" in message or "has shape" in message


def test_unknown_config_and_missing_checkpoint_are_named(
    tiny: TinyGdino, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_tiny_gdino(monkeypatch, tiny)
    with pytest.raises(EngineError, match="does not exist"):
        loading.load_model(tiny.spec.name, tmp_path / "nope.pth")
    monkeypatch.setitem(registry.MODELS, "bad_cfg", registry.ModelSpec(
        "bad_cfg", "groundingdino", registry.DETECTOR, "bad", "NoSuchConfig", "x.pth"))
    with pytest.raises(EngineError, match="NoSuchConfig.py does not exist"):
        loading.load_model("bad_cfg", tiny.checkpoint)


def test_official_checkpoint_extras_and_module_prefix_load(
    tiny: TinyGdino, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The official files carry training-only entries that the model does not have
    # (IDEA-Research/GroundingDINO#271); DataParallel saves add "module.".
    state = {f"module.{key}": value for key, value in tiny.model.state_dict().items()}
    state["label_enc.weight"] = torch.zeros(2001, 256)
    state["bert.embeddings.position_ids"] = torch.arange(64)[None]
    path = tmp_path / "official_like.pth"
    torch.save({"model": state}, path)
    install_tiny_gdino(monkeypatch, tiny)
    loaded = loading.load_model(tiny.spec.name, path)
    expected = tiny.model.state_dict()
    got = loaded.model.state_dict()
    assert got.keys() == expected.keys()
    assert all(torch.equal(got[key], expected[key]) for key in expected)
