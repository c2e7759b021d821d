"""Every runtime test exports into its own temporary cache, never the user's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from samdesk.inference.runtimes import cache, onnx_export


@pytest.fixture(autouse=True)
def runtime_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``SAMDESK_RUNTIME_CACHE`` set to a fresh folder for the test; the folder."""
    folder = tmp_path / "runtime-cache"
    monkeypatch.setenv(cache.ENV_VAR, str(folder))
    return folder


class ExportCounter:
    """Counts the chunks exported while installed (and still exports them)."""

    def __init__(self) -> None:
        self.chunks: list[str] = []
        self._export = onnx_export.export_chunk

    def __call__(self, chunk, example, path) -> None:  # noqa: ANN001 (export_chunk's own)
        self.chunks.append(chunk.name)
        self._export(chunk, example, path)


@pytest.fixture
def exports(monkeypatch: pytest.MonkeyPatch) -> Iterator[ExportCounter]:
    """The chunks exported during the test, by name."""
    counter = ExportCounter()
    monkeypatch.setattr(onnx_export, "export_chunk", counter)
    yield counter
