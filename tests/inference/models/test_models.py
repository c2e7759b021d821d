"""Installed checkpoints: registering a file, resolving it, and the messages a
person sees when a model is missing. No network is used here."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from samdesk.cli import main
from samdesk.errors import FormatError
from samdesk.inference.engines import loading
from samdesk.inference.engines.base import EngineError
from samdesk.inference.models import checkpoints, paths, registry

ZIP_HEAD = b"PK\x03\x04"


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "models"
    monkeypatch.setenv("SAMDESK_MODELS", str(folder))
    return folder


def checkpoint_like(path: Path, size: int = 4096, seed: int = 0) -> Path:
    """A file that starts like a torch.save zip archive, ``size`` bytes long."""
    body = np.random.default_rng(seed).integers(0, 256, size - 4, dtype=np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(ZIP_HEAD + body)
    return path


def with_checksum(monkeypatch: pytest.MonkeyPatch, name: str, data: bytes | None) -> None:
    """Make ``name``'s official size and sha256 those of ``data`` (None: unknown)."""
    spec = registry.MODELS[name]
    size, digest = (len(data), hashlib.sha256(data).hexdigest()) if data else (None, None)
    monkeypatch.setitem(registry.MODELS, name, dataclasses.replace(spec, size=size,
                                                                   sha256=digest))


def test_missing_checkpoint_names_the_commands_that_install_it(models_dir: Path) -> None:
    with pytest.raises(EngineError) as info:
        checkpoints.resolve_checkpoint(registry.MODELS["sam_vit_b"])
    assert str(info.value) == (
        "model sam_vit_b is not installed: run `samdesk models fetch sam_vit_b` "
        "or `samdesk models add sam_vit_b FILE`"
    )


def test_load_model_without_checkpoint_never_downloads(models_dir: Path) -> None:
    with pytest.raises(EngineError, match="samdesk models fetch sam2.1_hiera_tiny"):
        loading.load_model("sam2.1_hiera_tiny", device="cpu")
    assert not models_dir.exists() or list(models_dir.iterdir()) == []


def test_text_prompt_without_groundingdino_names_it(models_dir: Path) -> None:
    with pytest.raises(EngineError, match="samdesk models fetch groundingdino_swint_ogc"):
        checkpoints.resolve_detector()


def test_add_registers_the_file_in_place_and_resolve_returns_it(
    models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = checkpoint_like(tmp_path / "downloads" / "my_sam.pth")
    with_checksum(monkeypatch, "sam_vit_b", own.read_bytes())
    assert checkpoints.add("sam_vit_b", own) == own.resolve()
    assert checkpoints.resolve_checkpoint(registry.MODELS["sam_vit_b"]) == own.resolve()
    index = json.loads((models_dir / "models.json").read_text())
    assert index["models"]["sam_vit_b"]["path"] == str(own.resolve())
    assert index["models"]["sam_vit_b"]["sha256"] == hashlib.sha256(own.read_bytes()).hexdigest()
    assert sorted(p.name for p in models_dir.iterdir()) == ["models.json"]  # nothing copied


def test_add_refuses_a_file_that_is_not_the_official_one(
    models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    official = checkpoint_like(tmp_path / "official.pth", seed=1)
    other = checkpoint_like(tmp_path / "other.pth", seed=2)  # same size, other bytes
    with_checksum(monkeypatch, "sam_vit_b", official.read_bytes())
    with pytest.raises(EngineError, match="sha256 .* differs .* --force"):
        checkpoints.add("sam_vit_b", other)
    assert checkpoints.installed("sam_vit_b") is None
    assert checkpoints.add("sam_vit_b", other, force=True) == other.resolve()
    assert checkpoints.installed("sam_vit_b") == other.resolve()


def test_add_checks_the_size_against_the_official_file(models_dir: Path, tmp_path: Path) -> None:
    small = checkpoint_like(tmp_path / "sam_vit_b_01ec64.pth")
    with pytest.raises(EngineError, match="4096 bytes, but the official .* has 375042383"):
        checkpoints.add("sam_vit_b", small)


def test_add_refuses_files_that_are_not_checkpoints(models_dir: Path, tmp_path: Path) -> None:
    page = tmp_path / "sam_vit_b_01ec64.pth"
    page.write_text("<html>Access denied</html>")
    with pytest.raises(EngineError, match="not a PyTorch checkpoint"):
        checkpoints.add("sam_vit_b", page, force=True)
    with pytest.raises(EngineError, match="no such file"):
        checkpoints.add("sam_vit_b", tmp_path / "nowhere.pth")
    with pytest.raises(EngineError, match="needs no checkpoint"):
        checkpoints.add("grabcut", page)
    assert not (models_dir / "models.json").exists()


def test_a_registered_file_that_was_moved_is_reported(
    models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_checksum(monkeypatch, "sam2.1_hiera_tiny", None)
    own = checkpoint_like(tmp_path / "t.pt")
    checkpoints.add("sam2.1_hiera_tiny", own)
    own.unlink()
    with pytest.raises(EngineError, match="registered at .*t.pt but that file is gone"):
        checkpoints.resolve_checkpoint(registry.MODELS["sam2.1_hiera_tiny"])


def test_a_file_dropped_in_the_models_folder_counts_as_installed(models_dir: Path) -> None:
    spec = registry.MODELS["sam_vit_l"]
    checkpoint_like(models_dir / spec.filename)
    assert checkpoints.resolve_checkpoint(spec) == models_dir / spec.filename


def test_groundingdino_without_tokenizer_files_says_so(
    models_dir: Path, tmp_path: Path
) -> None:
    spec = registry.MODELS["groundingdino_swint_ogc"]
    checkpoint_like(models_dir / spec.filename)
    with pytest.raises(EngineError, match="vocab.txt.*samdesk models fetch groundingdino"):
        checkpoints.resolve_detector()
    for remote in registry.BERT_FILES:
        (paths.bert_dir() / remote.filename).parent.mkdir(parents=True, exist_ok=True)
        (paths.bert_dir() / remote.filename).write_text("x")
    assert checkpoints.resolve_detector() == (spec, models_dir / spec.filename)


def test_a_damaged_index_is_named_in_the_error(models_dir: Path) -> None:
    models_dir.mkdir()
    (models_dir / "models.json").write_text("{not json")
    with pytest.raises(FormatError, match="models.json"):
        checkpoints.installed("sam_vit_b")


def test_load_model_builds_the_engine_from_the_registered_checkpoint(
    models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, Path | None, str]] = []

    def load(spec: registry.ModelSpec, checkpoint: Path | None, device: str) -> str:
        calls.append((spec.name, checkpoint, device))
        return "engine"

    monkeypatch.setitem(sys.modules, "fake_family", types.SimpleNamespace(load=load))
    monkeypatch.setitem(loading.FAMILY_LOADERS, "sam", "fake_family:load")
    with_checksum(monkeypatch, "sam_vit_h", None)
    own = checkpoint_like(tmp_path / "h.pth")
    checkpoints.add("sam_vit_h", own)
    assert loading.load_model("sam_vit_h", device="cpu") == "engine"
    assert loading.load_model("sam_vit_h", tmp_path / "explicit.pth") == "engine"
    assert calls == [("sam_vit_h", own.resolve(), "cpu"),
                     ("sam_vit_h", tmp_path / "explicit.pth", "cpu")]


def test_registered_real_checkpoint_loads_through_the_sam_engine(
    models_dir: Path, tmp_path: Path
) -> None:
    import model_factories as factories
    import torch

    chosen = factories.make_sam_checkpoint(tmp_path / "chosen.pth", seed=1)
    state = torch.load(chosen, weights_only=True)
    marked = "image_encoder.patch_embed.proj.weight"
    state[marked] = torch.full_like(state[marked], 0.125)  # no initialiser makes this
    torch.save(state, chosen)
    with factories.registered_test_model("sam", factories.TINY_SAM) as spec:
        checkpoints.add(spec.name, chosen)
        engine = loading.load_model(spec.name, device="cpu")
    loaded = engine.model.state_dict()
    assert set(loaded) == set(state)
    assert all(torch.equal(loaded[key].cpu(), value) for key, value in state.items())


# --- samdesk models list / add ----------------------------------------------------


def test_cli_list_shows_status_size_and_path(
    models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with_checksum(monkeypatch, "sam2_hiera_small", None)
    own = checkpoint_like(tmp_path / "s.pt", size=2_500_000)
    assert main(["models", "add", "sam2_hiera_small", str(own)]) == 0
    assert f"registered sam2_hiera_small: {own.resolve()}" in capsys.readouterr().out
    assert main(["models", "list"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line}
    assert "built-in" in rows["grabcut"]
    assert "not installed" in rows["sam_vit_b"] and "375.0 MB" in rows["sam_vit_b"]
    assert "installed" in rows["sam2_hiera_small"]
    assert "2.5 MB" in rows["sam2_hiera_small"]
    assert rows["sam2_hiera_small"].endswith(str(own.resolve()))


def test_cli_add_errors_are_one_line(
    models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "add", "sam_vit_b", str(tmp_path / "nope.pth")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.pth: no such file" in err
    assert main(["models", "add", "no_such_model", str(tmp_path / "x.pth")]) == 2
    assert "unknown model 'no_such_model'" in capsys.readouterr().err


def test_listing_models_does_not_import_torch(models_dir: Path) -> None:
    code = (
        "import sys\n"
        "from samdesk.cli import main\n"
        "assert main(['models', 'list']) == 0\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "sam_vit_b" in done.stdout
