"""The image loader: upright pixels, every pixel mode, broken files, huge files, listing, cache."""

from __future__ import annotations

import hashlib
import os
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from samdesk.errors import ImageReadError
from samdesk.image_store import ImageStore
from samdesk.images import (
    content_hash,
    list_images,
    load_display,
    load_rgb,
    read_size,
)

# ---------------------------------------------------------------- helpers


def exif_with_orientation(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def stored_for(upright: np.ndarray, orientation: int) -> np.ndarray:
    """The pixels a camera stores so that a viewer honouring ``orientation`` shows ``upright``.

    Written from the EXIF definitions (where row 0 and column 0 of the stored
    image go), not from Pillow's transpose table.
    """
    swap = upright.transpose(1, 0, 2)
    return {
        1: upright,  # row 0 top, column 0 left
        2: upright[:, ::-1],  # row 0 top, column 0 right
        3: upright[::-1, ::-1],  # row 0 bottom, column 0 right
        4: upright[::-1],  # row 0 bottom, column 0 left
        5: swap,  # row 0 left, column 0 top
        6: np.rot90(upright, 1),  # row 0 right, column 0 top
        7: np.rot90(upright, 1)[:, ::-1],  # row 0 right, column 0 bottom
        8: np.rot90(upright, -1),  # row 0 left, column 0 bottom
    }[orientation]


def unique_pattern(height: int, width: int) -> np.ndarray:
    """An (H, W, 3) uint8 pattern with no symmetry: every pixel differs from its mirror images."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 7 % 256, y * 11 % 256, (x + y * width) % 256], -1).astype(np.uint8)


BLOCK_COLOURS = np.array(
    [
        [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]],
        [[0, 255, 255], [255, 0, 255], [255, 255, 255], [0, 0, 0]],
        [[128, 0, 0], [0, 128, 0], [0, 0, 128], [128, 128, 128]],
    ],
    dtype=np.uint8,
)  # 3 rows x 4 columns of 16-pixel blocks: a 64 x 48 upright picture
BLOCK = 16


def block_centres(rgb: np.ndarray) -> np.ndarray:
    """Mean colour of the middle 8x8 of each 16x16 block, shape (rows, cols, 3)."""
    rows, cols = rgb.shape[0] // BLOCK, rgb.shape[1] // BLOCK
    centres = rgb.reshape(rows, BLOCK, cols, BLOCK, 3)[:, 4:12, :, 4:12]
    return centres.astype(float).mean(axis=(1, 3))


# ---------------------------------------------------------------- orientation


@pytest.mark.parametrize("suffix", ["png", "tiff", "webp"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_lossless_file_with_exif_orientation_loads_upright_exactly(
    tmp_path: Path, orientation: int, suffix: str
) -> None:
    upright = unique_pattern(6, 10)
    path = tmp_path / f"o{orientation}.{suffix}"
    Image.fromarray(np.ascontiguousarray(stored_for(upright, orientation))).save(
        path, exif=exif_with_orientation(orientation), lossless=True
    )

    assert read_size(path) == (10, 6)
    np.testing.assert_array_equal(load_rgb(path), upright)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_with_exif_orientation_loads_upright(tmp_path: Path, orientation: int) -> None:
    upright = BLOCK_COLOURS.repeat(BLOCK, 0).repeat(BLOCK, 1)
    path = tmp_path / f"o{orientation}.jpg"
    Image.fromarray(np.ascontiguousarray(stored_for(upright, orientation))).save(
        path, quality=95, subsampling=0, exif=exif_with_orientation(orientation)
    )

    assert read_size(path) == (64, 48)
    rgb = load_rgb(path)
    assert rgb.shape == (48, 64, 3)
    np.testing.assert_allclose(block_centres(rgb), BLOCK_COLOURS, atol=10)


# ---------------------------------------------------------------- pixel modes


def _mode_cases() -> dict[str, tuple[Image.Image, str, np.ndarray]]:
    """mode name -> (image to save, file suffix, expected (H, W, 3) RGB after loading)."""
    gray = np.array([[0, 64, 128, 255]], np.uint8)
    checker = np.indices((4, 4)).sum(0) % 2 == 1
    palette = [255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9)
    indices = np.array([[0, 1, 2, 1]], np.uint8)
    rgb_of_indices = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [0, 255, 0]]], np.uint8)
    ramp16 = np.linspace(0, 65535, 256).round().astype(np.uint16)[None]
    rgb16 = np.repeat((ramp16 >> 8).astype(np.uint8)[..., None], 3, axis=2)
    ramp_f = np.linspace(0, 1, 256, dtype=np.float32)[None]
    rgb_f = np.repeat(np.rint(ramp_f * 255).astype(np.uint8)[..., None], 3, axis=2)

    def grey3(values: np.ndarray) -> np.ndarray:
        return np.repeat(values[..., None], 3, axis=2)

    palette_image = Image.frombytes("P", (4, 1), indices.tobytes())
    palette_image.putpalette(palette)
    transparent = palette_image.copy()
    transparent.info["transparency"] = 1  # index 1 (green) is see-through

    rgba = np.array([[[10, 20, 30, 0], [200, 100, 50, 255], [1, 2, 3, 128]]], np.uint8)
    la = np.array([[[128, 0], [128, 255], [7, 100]]], np.uint8)
    cmyk = np.array([[[0, 0, 0, 0], [255, 0, 0, 0], [0, 255, 0, 0], [0, 0, 0, 255]]], np.uint8)
    return {
        "1": (Image.fromarray(checker), "png", grey3(checker.astype(np.uint8) * 255)),
        "L": (Image.fromarray(gray), "png", grey3(gray)),
        "LA": (Image.fromarray(la, "LA"), "png", grey3(la[..., 0])),
        "P": (palette_image, "png", rgb_of_indices),
        "P+transparency": (transparent, "png", rgb_of_indices),
        "RGBA": (Image.fromarray(rgba, "RGBA"), "png", rgba[..., :3]),
        "CMYK": (
            Image.fromarray(cmyk, "CMYK"),
            "tif",
            np.array([[[255, 255, 255], [0, 255, 255], [255, 0, 255], [0, 0, 0]]], np.uint8),
        ),
        "I;16": (Image.fromarray(ramp16), "png", rgb16),
        "I;16B": (Image.frombytes("I;16B", (256, 1), ramp16.astype(">u2").tobytes()), "tif", rgb16),
        "I": (Image.fromarray(ramp16.astype(np.int32)), "tif", rgb16),
        "F": (Image.fromarray(ramp_f), "tif", rgb_f),
    }


MODE_CASES = _mode_cases()


@pytest.mark.parametrize("mode", list(MODE_CASES))
def test_every_pixel_mode_becomes_rgb_uint8(tmp_path: Path, mode: str) -> None:
    image, suffix, expected = MODE_CASES[mode]
    path = tmp_path / f"image.{suffix}"
    image.save(path)
    with Image.open(path) as reopened:  # the file really holds that mode
        assert reopened.mode == mode.split("+")[0]

    rgb = load_rgb(path)

    assert rgb.dtype == np.uint8 and rgb.shape == expected.shape
    np.testing.assert_array_equal(rgb, expected)


def test_sixteen_bit_gradient_maps_monotonically_onto_full_range(tmp_path: Path) -> None:
    ramp = np.linspace(0, 65535, 1000).round().astype(np.uint16)[None].repeat(3, 0)
    Image.fromarray(ramp).save(tmp_path / "ramp.png")

    row = load_rgb(tmp_path / "ramp.png")[1, :, 0].astype(int)

    assert row[0] == 0 and row[-1] == 255
    assert np.all(np.diff(row) >= 0)
    assert len(np.unique(row)) == 256


def test_cmyk_jpeg_loads_with_its_colours(tmp_path: Path) -> None:
    cmyk = np.zeros((32, 64, 4), np.uint8)
    cmyk[:, 32:, 0] = 255  # right half full cyan, left half paper white
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "print.jpg", quality=95)

    rgb = load_rgb(tmp_path / "print.jpg").astype(int)

    np.testing.assert_allclose(rgb[16, 8], [255, 255, 255], atol=6)
    np.testing.assert_allclose(rgb[16, 56], [0, 255, 255], atol=6)


@pytest.mark.parametrize("suffix", ["png", "bmp", "tiff", "webp"])
def test_lossless_formats_round_trip_exactly(tmp_path: Path, suffix: str) -> None:
    pattern = unique_pattern(20, 30)
    path = tmp_path / f"pattern.{suffix.upper()}"
    options = {"lossless": True} if suffix == "webp" else {}
    Image.fromarray(pattern).save(path, **options)

    assert read_size(path) == (30, 20)
    np.testing.assert_array_equal(load_rgb(path), pattern)


# ---------------------------------------------------------------- broken files


def _good_png(path: Path, value: int = 90) -> Path:
    Image.new("RGB", (8, 6), (value, value, value)).save(path)
    return path


def _broken_files(folder: Path) -> dict[str, str]:
    """Write broken files into ``folder``; file name -> the reason a person should read."""
    noise = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "whole.jpg", quality=90)
    data = (folder / "whole.jpg").read_bytes()
    (folder / "cut.jpg").write_bytes(data[: len(data) // 2])
    (folder / "whole.jpg").unlink()
    Image.fromarray(noise).save(folder / "whole.png")
    data = (folder / "whole.png").read_bytes()
    (folder / "cut.png").write_bytes(data[: len(data) // 2])
    (folder / "whole.png").unlink()
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "notes.png").write_text("these are my notes, not a picture\n")
    return {
        "cut.jpg": "truncated file",
        "cut.png": "truncated file",
        "zero.jpg": "empty file",
        "notes.png": "not an image",
    }


def test_broken_files_raise_image_read_error_naming_the_file(tmp_path: Path) -> None:
    reasons = _broken_files(tmp_path)
    reasons["missing.png"] = "file not found"

    for name, reason in reasons.items():
        with pytest.raises(ImageReadError) as caught:
            load_rgb(tmp_path / name)
        assert caught.value.reason == reason
        assert caught.value.path == tmp_path / name
        assert name in str(caught.value) and "\n" not in str(caught.value)
    for name in ("zero.jpg", "notes.png", "missing.png"):
        with pytest.raises(ImageReadError, match=name):
            read_size(tmp_path / name)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_folder_with_broken_files_lists_all_and_good_ones_still_load(tmp_path: Path) -> None:
    reasons = _broken_files(tmp_path)
    _good_png(tmp_path / "a_good.png")
    _good_png(tmp_path / "z_good.png")

    assert list_images(tmp_path) == sorted([*reasons, "a_good.png", "z_good.png"], key=str.lower)
    store = ImageStore()
    loaded, failed = [], []
    for name in list_images(tmp_path):
        try:
            store.get(tmp_path / name)
            loaded.append(name)
        except ImageReadError as error:
            failed.append((name, error.reason))
    assert loaded == ["a_good.png", "z_good.png"]
    assert dict(failed) == reasons


def test_non_ascii_paths_list_load_and_hash(tmp_path: Path) -> None:
    folder = tmp_path / "données"
    folder.mkdir()
    pattern = unique_pattern(5, 7)
    Image.fromarray(pattern).save(folder / "画像.png")

    assert list_images(tmp_path) == ["données/画像.png"]
    path = tmp_path / list_images(tmp_path)[0]
    assert read_size(path) == (7, 5)
    np.testing.assert_array_equal(load_rgb(path), pattern)
    assert content_hash(path) == hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- huge images


def write_huge_bilevel_png(path: Path, side: int) -> None:
    """A side x side 1-bit PNG written row by row (a few MB of memory, ~50 kB on disk).

    Black where x < side/4 or y >= 3*side/4, white elsewhere.
    """
    row_bytes = side // 8
    top_row = b"\x00" + bytes(row_bytes // 4) + b"\xff" * (row_bytes - row_bytes // 4)
    bottom_row = b"\x00" + bytes(row_bytes)
    packer = zlib.compressobj(9)
    data = [packer.compress(top_row if y < side * 3 // 4 else bottom_row) for y in range(side)]
    data.append(packer.flush())

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", b"".join(data))
        + chunk(b"IEND", b"")
    )


def test_20000_square_image_opens_and_gives_a_display_proxy(tmp_path: Path) -> None:
    path = tmp_path / "scan.png"
    write_huge_bilevel_png(path, 20000)
    limit_before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(Image.DecompressionBombError):  # plain Pillow refuses this file
        Image.open(path)

    assert read_size(path) == (20000, 20000)
    proxy, scale = load_display(path, max_side=4096)

    assert proxy.shape == (4096, 4096, 3) and proxy.dtype == np.uint8
    assert scale == pytest.approx(4096 / 20000)

    # image pixel (x, y) is proxy pixel (x * scale, y * scale)
    def at(x: int, y: int) -> int:
        return int(proxy[round(y * scale), round(x * scale), 0])

    assert at(2000, 2000) == 0 and at(10000, 2000) == 255 and at(10000, 18000) == 0
    assert at(4500, 10000) == 0 and at(5600, 10000) == 255  # the edge at x = 5000 stays put
    assert Image.MAX_IMAGE_PIXELS == limit_before  # our raised limit did not leak


def test_display_proxy_of_rotated_jpeg_is_upright_and_scaled(tmp_path: Path) -> None:
    upright = np.zeros((2000, 3000, 3), np.uint8)
    upright[:1000, :1500] = (255, 0, 0)
    upright[:1000, 1500:] = (0, 255, 0)
    upright[1000:, :1500] = (0, 0, 255)
    upright[1000:, 1500:] = (255, 255, 255)
    path = tmp_path / "phone.jpg"
    Image.fromarray(np.ascontiguousarray(stored_for(upright, 6))).save(
        path, quality=90, exif=exif_with_orientation(6)
    )

    proxy, scale = load_display(path, max_side=600)

    assert read_size(path) == (3000, 2000)
    assert proxy.shape == (400, 600, 3) and scale == pytest.approx(0.2)
    for (y, x), colour in {
        (100, 150): (255, 0, 0),
        (100, 450): (0, 255, 0),
        (300, 150): (0, 0, 255),
        (300, 450): (255, 255, 255),
    }.items():
        np.testing.assert_allclose(proxy[y, x], colour, atol=8)
    small, small_scale = load_display(path, max_side=5000)
    assert small_scale == 1.0 and small.shape == (2000, 3000, 3)


# ---------------------------------------------------------------- listing and hashing


def test_list_images_natural_order_subfolders_hidden_skipped(tmp_path: Path) -> None:
    names = [
        "img10.png",
        "img2.png",
        "img1.JPG",
        "IMG3.Jpeg",
        "sub/b.TIF",
        "sub/a.webp",
        "sub/deeper/c.bmp",
        "sub/deeper/d.tiff",
        "notes.txt",
        "labels.json",
        "img4.png.bak",
        ".hidden.png",
        ".samdesk/thumb.png",
        "sub/.cache/x.jpg",
    ]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")  # never opened: listing does not decode
    (tmp_path / "sub" / "loop").symlink_to(tmp_path, target_is_directory=True)

    assert list_images(tmp_path) == [
        "img1.JPG",
        "img2.png",
        "IMG3.Jpeg",
        "img10.png",
        "sub/a.webp",
        "sub/b.TIF",
        "sub/deeper/c.bmp",
        "sub/deeper/d.tiff",
    ]


def test_content_hash_follows_the_bytes_not_the_name(tmp_path: Path) -> None:
    payload = np.random.default_rng(1).integers(0, 256, 3_000_000, dtype=np.uint8).tobytes()
    (tmp_path / "a.png").write_bytes(payload)
    (tmp_path / "copy.png").write_bytes(payload)
    (tmp_path / "edited.png").write_bytes(payload[:-1] + bytes([payload[-1] ^ 1]))

    digest = content_hash(tmp_path / "a.png")
    assert digest == hashlib.sha256(payload).hexdigest()
    assert content_hash(tmp_path / "copy.png") == digest
    assert content_hash(tmp_path / "edited.png") != digest
    with pytest.raises(ImageReadError, match="gone.png: file not found"):
        content_hash(tmp_path / "gone.png")


# ---------------------------------------------------------------- ImageStore


def test_store_returns_cached_image_without_decoding_again(tmp_path: Path) -> None:
    path = _good_png(tmp_path / "a.png", 77)
    store = ImageStore()
    first = store.get(path)
    path.unlink()  # a second decode would now fail

    again = store.get(path)

    assert again is first and int(again[0, 0, 0]) == 77
    with pytest.raises(ValueError):  # shared between threads, so nobody may draw on it
        again[0, 0, 0] = 1


def test_store_byte_bound_evicts_least_recently_used(tmp_path: Path) -> None:
    paths = [_good_png(tmp_path / f"{name}.png") for name in "abc"]  # 144 bytes decoded each
    store = ImageStore(max_bytes=300)
    store.get(paths[0])
    store.get(paths[1])
    store.get(paths[0])  # a is now the most recently used
    store.get(paths[2])  # over the bound: b goes

    assert paths[0] in store and paths[2] in store and paths[1] not in store
    assert store.nbytes == 288 and len(store) == 2
    for path in paths:
        path.unlink()
    store.get(paths[0])
    with pytest.raises(ImageReadError, match="b.png: file not found"):
        store.get(paths[1])


def test_store_decodes_once_when_threads_ask_together(tmp_path: Path) -> None:
    path = _good_png(tmp_path / "shared.png")
    calls: list[Path] = []
    started, release = threading.Event(), threading.Event()

    def slow_loader(p: Path) -> np.ndarray:
        calls.append(p)
        started.set()
        release.wait(5)
        return load_rgb(p)

    store = ImageStore(loader=slow_loader)
    results: list[np.ndarray] = []
    threads = [
        threading.Thread(target=lambda: results.append(store.get(path)), daemon=True)
        for _ in range(6)
    ]
    for thread in threads:
        thread.start()
    started.wait(5)
    time.sleep(0.1)  # let the other threads reach get() while the decode is running
    release.set()
    for thread in threads:
        thread.join(5)

    assert len(calls) == 1 and len(results) == 6
    assert all(result is results[0] for result in results)


def test_store_retries_a_failed_file_and_forgets_a_changed_one(tmp_path: Path) -> None:
    path = tmp_path / "later.png"
    path.write_text("not yet")
    store = ImageStore()
    with pytest.raises(ImageReadError, match="not an image"):
        store.get(path)
    _good_png(path, 10)
    assert int(store.get(path)[0, 0, 0]) == 10

    _good_png(path, 200)
    assert int(store.get(path)[0, 0, 0]) == 10  # still the cached pixels
    store.discard(path)
    assert int(store.get(path)[0, 0, 0]) == 200
    assert os.fspath(path) in store


def _reference_natural_key(text: str) -> tuple[str, str]:
    """The natural order, spelled plainly: casefolded, ``/`` lowest, digit runs padded
    to 32 places, ties broken by the text itself."""
    import re

    padded = re.sub(r"[0-9]+", lambda m: m.group().rjust(32, "0"),
                    text.casefold().replace("/", "\0"))
    return (padded, text)


def test_natural_order_matches_its_definition_for_awkward_names() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from samdesk.imagefiles import natural_key, natural_sorted

    pieces = st.sampled_from(["a", "A", "b", "Z", "ß", "SS", "é", "É", "Ω", "_", "-", ".",
                              " ", "/", "0", "00", "1", "01", "2", "9", "10", "007",
                              "1" * 40, "\x01", "\x02", ".jpg"])
    names = st.lists(st.lists(pieces, max_size=6).map("".join), max_size=40)

    @settings(max_examples=300, deadline=None)
    @given(names)
    def check(items: list[str]) -> None:
        expected = sorted(items, key=_reference_natural_key)
        assert sorted(items, key=natural_key) == expected
        assert natural_sorted(items) == expected

    check()


def test_natural_sorted_of_many_files_sorts_digits_by_value() -> None:
    from samdesk.imagefiles import natural_sorted

    items = [f"shot{i}.png" for i in range(1500, -1, -1)] + ["Shot7.png", "shot007.png"]
    ordered = natural_sorted(items)
    assert ordered[:4] == ["shot0.png", "shot1.png", "shot2.png", "shot3.png"]
    assert ordered[7:10] == ["Shot7.png", "shot007.png", "shot7.png"]  # ties: by the text
    assert ordered[-1] == "shot1500.png"
