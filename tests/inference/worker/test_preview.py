"""A click on a zoomed-out image is drawn first at screen size, then at full resolution.

When the window shows a 4000 x 3000 photo in a 1333 x 1000 area, the worker
answers a click with the best candidate previewed at that size (a tenth of the
pixels to upsample), then sends its full-resolution mask, the reference's pixel
for pixel, which is the only one ever saved.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from samdesk.inference.engines.upsample import preview_size
from samdesk.inference.worker.answers import answer
from samdesk.inference.worker.requests import ImageRef, Predict
from samdesk.views.canvas import Canvas
from samdesk.views.qtutil import qimage_to_rgb
from tests.inference.engines.test_fast_decode import setup  # noqa: F401 - the tiny SAM / SAM 2.1 fixture
from tests.model_factories import IMAGES, prompt_case

REF = ImageRef(Path("photo.jpg"), "photo")


def test_preview_size_is_the_screen_size_only_when_much_smaller_than_the_image() -> None:
    assert preview_size((1000, 1333), (3000, 4000)) == (1000, 1333)
    assert preview_size(None, (3000, 4000)) is None  # the window gave no size
    assert preview_size((2500, 3333), (3000, 4000)) is None  # most pixels shown: full mask
    assert preview_size((3000, 9000), (3000, 4000)) is None  # clamped to the image: full
    assert preview_size((0, 500), (3000, 4000)) is None


@pytest.mark.parametrize("image", IMAGES)
def test_a_preview_is_the_full_mask_at_screen_size(setup: tuple, image: str) -> None:  # noqa: F811
    engine, images = setup
    embedding, _ = images[image]
    height, width = embedding.image_size
    proposal = engine.propose(embedding, prompt_case("box_and_points", height, width))
    full = proposal.mask(0, 1)
    assert np.array_equal(proposal.preview(0, 1, (height, width)), full)
    size = (height // 3, width // 3)
    preview = proposal.preview(0, 1, size)
    assert preview.dtype == np.bool_ and preview.shape == size
    assert 0 < np.count_nonzero(preview) < preview.size  # a real mask, not all or nothing
    # The screen shows the full mask sampled at its pixel centres; the preview
    # may differ from that only where the full mask has an edge within two pixels
    # (or, rarely, where a logit just touches the threshold between two samples).
    rows = ((np.arange(size[0]) + 0.5) * height / size[0]).astype(int)
    cols = ((np.arange(size[1]) + 0.5) * width / size[1]).astype(int)
    kernel = np.ones((5, 5), np.uint8)
    as_u8 = full.astype(np.uint8)
    edge = (cv2.dilate(as_u8, kernel) != cv2.erode(as_u8, kernel))[np.ix_(rows, cols)]
    differing = preview != full[np.ix_(rows, cols)]
    assert np.count_nonzero(differing & ~edge) <= 1e-4 * preview.size
    assert np.count_nonzero(differing) <= 0.05 * preview.size


def test_the_first_answer_is_a_preview_and_the_full_mask_comes_first_after(
        setup: tuple) -> None:  # noqa: F811
    engine, images = setup
    embedding, reference = images["4000x3000"]
    prompts = prompt_case("one_point", 3000, 4000)
    result, rest = answer(engine, embedding, Predict(7, REF, prompts, preview=(1000, 1333)))
    best = int(result.best()[0])
    assert dict(result.masks) == {}  # nothing at full resolution yet
    assert list(result.previews) == [(0, best)]
    assert result.previews[0, best].shape == (1000, 1333)
    assert [(job.obj, job.candidate) for job in rest][0] == (0, best)  # its full mask next
    assert sorted((job.obj, job.candidate) for job in rest) == [(0, 0), (0, 1), (0, 2)]
    ref_masks, ref_scores = reference(prompts)
    assert best == int(np.argmax(ref_scores[0]))
    assert np.array_equal(rest[0].proposal.mask(0, best), ref_masks[0, best])


def test_no_preview_when_the_window_shows_the_image_near_full_size(setup: tuple) -> None:  # noqa: F811
    engine, images = setup
    embedding, reference = images["600x1700"]
    prompts = prompt_case("box", 1700, 600)
    result, rest = answer(engine, embedding, Predict(8, REF, prompts, preview=(1600, 560)))
    best = int(result.best()[0])
    assert dict(result.previews) == {}
    ref_masks, _ = reference(prompts)
    assert np.array_equal(result.masks[0, best], ref_masks[0, best])
    assert (0, best) not in [(job.obj, job.candidate) for job in rest]


def test_canvas_stretches_a_preview_over_the_image(qtbot) -> None:
    canvas = Canvas()
    qtbot.addWidget(canvas)
    canvas.resize(400, 300)
    canvas.show()
    qtbot.waitExposed(canvas)
    canvas.set_image(np.zeros((1500, 2000, 3), np.uint8))  # fitted: a fifth of its size
    shown = canvas.shown_size()
    ratio = canvas.devicePixelRatioF()
    assert shown is not None and 350 * ratio <= shown[1] <= 400 * ratio  # fitted, with a margin
    assert shown[0] == pytest.approx(shown[1] * 0.75, abs=1)
    preview = np.zeros((150, 200), bool)  # a tenth of the image's size
    preview[50:100, 100:150] = True  # image pixels x 1000-1500, y 500-1000
    canvas.set_candidate(preview, "#ffffff", preview=True)
    grabbed = qimage_to_rgb(canvas.viewport().grab().toImage())

    def at(x: float, y: float) -> int:
        p = canvas.mapFromScene(x, y)
        return int(grabbed[p.y(), p.x()].sum())

    assert at(1250, 750) > 0  # inside the stretched mask
    assert at(1250, 400) == 0 and at(800, 750) == 0 and at(1600, 750) == 0  # outside
    canvas.set_candidate(np.ones((1500, 2000), bool), "#ffffff")  # the full mask replaces it
    assert canvas.items()  # drawn without a size error
    with pytest.raises(ValueError, match="candidate mask is 200x150"):
        canvas.set_candidate(preview, "#ffffff")  # not a preview: must be the image's size
