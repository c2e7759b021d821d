"""COCO RLE helpers agree with plain numpy on every kind of mask."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from samdesk import masks

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SHAPES = st.tuples(st.integers(1, 24), st.integers(1, 24))


def _special(shape: tuple[int, int], kind: str) -> np.ndarray:
    h, w = shape
    m = np.zeros(shape, dtype=bool)
    if kind == "full":
        m[:] = True
    elif kind == "pixel":
        m[h // 2, w // 3] = True
    elif kind == "border":
        m[0, :] = True
        m[:, w - 1] = True
    elif kind == "holes" and h >= 3 and w >= 3:
        m[:] = True
        m[1:-1, 1:-1] = False
        m[h // 2, w // 2] = True
    return m


MASKS = st.one_of(
    SHAPES.flatmap(lambda s: arrays(bool, s)),
    st.builds(_special, SHAPES, st.sampled_from(["empty", "full", "pixel", "border", "holes"])),
    st.integers(1, 40).flatmap(lambda n: arrays(bool, st.sampled_from([(1, n), (n, 1)]))),
)


def pair_strategy() -> st.SearchStrategy[tuple[np.ndarray, np.ndarray]]:
    return SHAPES.flatmap(lambda s: st.tuples(arrays(bool, s), arrays(bool, s)))


def numpy_bbox(m: np.ndarray) -> list[float]:
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    if rows.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1),
            float(rows[-1] - rows[0] + 1)]


def numpy_runs(m: np.ndarray) -> list[int]:
    """COCO run lengths: column-major, starting with a run of zeros (maybe empty)."""
    flat = m.ravel(order="F").astype(np.int8)
    edges = np.concatenate(([0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]))
    runs = np.diff(edges).tolist()
    return [0, *runs] if flat[0] else runs


@settings(max_examples=300, deadline=None)
@given(MASKS)
def test_encode_decode_area_bbox_match_numpy(m: np.ndarray) -> None:
    rle = masks.encode(m)
    assert rle["size"] == list(m.shape) and isinstance(rle["counts"], str)
    back = masks.decode(rle)
    assert back.dtype == bool and back.flags["C_CONTIGUOUS"] and np.array_equal(back, m)
    assert masks.area(rle) == int(m.sum())
    assert masks.bbox(rle) == numpy_bbox(m)
    assert masks.is_empty(rle) == (not m.any())


@settings(max_examples=200, deadline=None)
@given(MASKS)
def test_bytes_and_uncompressed_counts_decode_to_the_same_mask(m: np.ndarray) -> None:
    rle = masks.encode(m)
    as_bytes = {"size": rle["size"], "counts": rle["counts"].encode()}
    uncompressed = {"size": rle["size"], "counts": numpy_runs(m)}
    assert np.array_equal(masks.decode(as_bytes), m)
    assert np.array_equal(masks.decode(uncompressed), m)
    assert masks.normalize(uncompressed) == rle
    assert masks.compressed_runs(rle["counts"]).tolist() == numpy_runs(m)
    assert masks.validate(as_bytes) == rle


@settings(max_examples=200, deadline=None)
@given(pair_strategy())
def test_set_operations_match_numpy(pair: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = pair
    ra, rb = masks.encode(a), masks.encode(b)
    assert np.array_equal(masks.decode(masks.union(ra, rb)), a | b)
    assert np.array_equal(masks.decode(masks.intersection(ra, rb)), a & b)
    assert np.array_equal(masks.decode(masks.difference(ra, rb)), a & ~b)
    assert np.array_equal(masks.decode(masks.merge([ra, rb, ra])), a | b)
    assert np.array_equal(masks.decode(masks.merge([rb])), b)


def test_operations_refuse_masks_of_different_sizes() -> None:
    a = masks.encode(np.ones((4, 5), bool))
    b = masks.encode(np.ones((5, 4), bool))
    for op in (masks.union, masks.difference, masks.intersection):
        with pytest.raises(ValueError, match="differ in size"):
            op(a, b)
    with pytest.raises(ValueError, match="at least one"):
        masks.merge([])


@pytest.mark.parametrize("counts, message", [
    ("0", "cover 0 pixels"),  # too short: pycocotools would decode uninitialised memory
    ("Z", "middle of a number"),
    ("zz", "outside"),
    ("<<<<<<<<<", "cover 252 pixels"),
    ([3, 4], "add up to 7"),
    ([3, -1, 10], "non-negative"),
    (7, "must be str"),
])
def test_validate_rejects_counts_that_do_not_fit_the_size(counts: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        masks.validate({"size": [3, 4], "counts": counts})


def test_validate_rejects_a_bad_size() -> None:
    with pytest.raises(ValueError, match="size"):
        masks.validate({"size": [3], "counts": "0"})
    with pytest.raises(ValueError, match="'size' and 'counts'"):
        masks.validate({"counts": "0"})


def test_from_polygons_rasterises_pixel_edges_and_unites_parts() -> None:
    square = [1, 1, 4, 1, 4, 3, 1, 3]  # pixel edges around columns 1..3, rows 1..2
    far = [6, 0, 7, 0, 7, 1, 6, 1]  # exactly pixel (6, 0)
    m = masks.decode(masks.from_polygons([square, far], 5, 8))
    expected = np.zeros((5, 8), bool)
    expected[1:3, 1:4] = True
    expected[0, 6] = True
    assert np.array_equal(m, expected)


def test_from_polygons_ignores_pieces_under_three_points_and_rejects_bad_ones() -> None:
    line = [0, 0, 3, 3]  # two points: encloses nothing (and is not read as a box)
    assert masks.is_empty(masks.from_polygons([line], 4, 4))
    assert masks.area(masks.from_polygons([line, [0, 0, 2, 0, 2, 2, 0, 2]], 4, 4)) == 4
    with pytest.raises(ValueError, match="odd number"):
        masks.from_polygons([[0, 0, 1, 1, 2]], 4, 4)
    with pytest.raises(ValueError, match="not finite"):
        masks.from_polygons([[0, 0, 1e12, 0, 1, 1]], 4, 4)
    with pytest.raises(ValueError, match="not finite"):
        masks.from_polygons([[0, 0, float("nan"), 0, 1, 1]], 4, 4)
