"""Downloading model files: resume, servers that ignore Range, verification, errors.

Every test talks to a small HTTP server on 127.0.0.1 started by the test;
nothing else is ever contacted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from samdesk.cli import main
from samdesk.inference.models import checkpoints, paths, registry
from samdesk.inference.models.fetch import FetchError, fetch, part_path
from samdesk.inference.models.registry import RemoteFile

SIZE = 3 * 1024 * 1024 + 123  # a few MB, not a multiple of the chunk size
DROP_AT = 1_000_000


@dataclass
class Served:
    """One request the test server answered."""

    path: str
    range: str | None
    status: int
    body_bytes: int


class FileServer:
    """Serves ``files`` over HTTP/1.0 on loopback, with optional Range support.

    ``drop_after``: the next response sends only that many body bytes, then
    the connection is closed (the Content-Length promised more).
    ``delay``: seconds to wait before answering (to test timeouts).
    """

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.honor_range = True
        self.drop_after: int | None = None
        self.delay = 0.0
        self.requests: list[Served] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                server._answer(self)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)

    def url(self, name: str) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/{name}"

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        if self.delay:
            time.sleep(self.delay)
        name = handler.path.lstrip("/")
        asked = handler.headers.get("Range")
        data = self.files.get(name)
        if data is None:
            self.requests.append(Served(name, asked, 404, 0))
            handler.send_error(404, "Not Found")
            return
        start = 0
        if asked and self.honor_range:
            start = int(asked.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.requests.append(Served(name, asked, 416, 0))
                handler.send_error(416, "Range Not Satisfiable")
                return
        status = 206 if start else 200
        body = data[start:]
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(body)))
        if status == 206:
            handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        handler.end_headers()
        if self.drop_after is not None:
            body, self.drop_after = body[: self.drop_after], None
        try:
            handler.wfile.write(body)
            handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # the client gave up: fine
            pass
        self.requests.append(Served(name, asked, status, len(body)))


@pytest.fixture
def payload() -> bytes:
    return random.Random(7).randbytes(SIZE)


@pytest.fixture
def server(payload: bytes) -> Iterator[FileServer]:
    srv = FileServer({"model.pth": payload, "small.txt": b"tokenizer words\n"})
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_fetch_writes_the_served_file_and_reports_progress(
    server: FileServer, payload: bytes, tmp_path: Path
) -> None:
    dest = tmp_path / "models" / "model.pth"
    seen: list[tuple[int, int | None]] = []
    result = fetch(server.url("model.pth"), dest, SIZE, sha(payload),
                   progress=lambda done, total: seen.append((done, total)), chunk=256 * 1024)
    assert result == dest
    assert dest.read_bytes() == payload
    assert not part_path(dest).exists()
    assert seen[-1] == (SIZE, SIZE)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_interrupted_download_keeps_only_part_and_resumes_with_range(
    server: FileServer, payload: bytes, tmp_path: Path
) -> None:
    dest = tmp_path / "model.pth"
    server.drop_after = DROP_AT
    with pytest.raises(FetchError, match="resume") as info:
        fetch(server.url("model.pth"), dest, SIZE, sha(payload))
    assert "\n" not in str(info.value)
    assert not dest.exists()
    assert part_path(dest).stat().st_size == DROP_AT

    fetch(server.url("model.pth"), dest, SIZE, sha(payload))
    second = server.requests[-1]
    assert second.range == f"bytes={DROP_AT}-"
    assert second.status == 206
    assert second.body_bytes == SIZE - DROP_AT
    assert dest.read_bytes() == payload
    assert not part_path(dest).exists()


def test_server_ignoring_range_still_gives_the_right_file(
    server: FileServer, payload: bytes, tmp_path: Path
) -> None:
    dest = tmp_path / "model.pth"
    server.honor_range = False
    server.drop_after = DROP_AT
    with pytest.raises(FetchError):
        fetch(server.url("model.pth"), dest, SIZE, sha(payload))
    fetch(server.url("model.pth"), dest, SIZE, sha(payload))
    assert server.requests[-1].range == f"bytes={DROP_AT}-"
    assert server.requests[-1].status == 200
    assert dest.read_bytes() == payload


def test_resume_without_known_size_or_hash(
    server: FileServer, payload: bytes, tmp_path: Path
) -> None:
    dest = tmp_path / "model.pth"
    server.drop_after = DROP_AT
    with pytest.raises(FetchError):
        fetch(server.url("model.pth"), dest)
    fetch(server.url("model.pth"), dest)
    assert server.requests[-1].body_bytes == SIZE - DROP_AT
    assert dest.read_bytes() == payload


def test_wrong_sha256_removes_the_download(
    server: FileServer, payload: bytes, tmp_path: Path
) -> None:
    dest = tmp_path / "model.pth"
    with pytest.raises(FetchError, match="sha256 mismatch") as info:
        fetch(server.url("model.pth"), dest, SIZE, "0" * 64)
    assert "model.pth" in str(info.value) and "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_server_offering_another_size_is_refused_before_writing(
    server: FileServer, tmp_path: Path
) -> None:
    dest = tmp_path / "model.pth"
    with pytest.raises(FetchError, match=f"server offers {SIZE} bytes"):
        fetch(server.url("model.pth"), dest, SIZE + 1)
    assert list(tmp_path.iterdir()) == []


def test_http_404_is_one_line_naming_the_url(server: FileServer, tmp_path: Path) -> None:
    url = server.url("missing.pth")
    with pytest.raises(FetchError) as info:
        fetch(url, tmp_path / "missing.pth")
    message = str(info.value)
    assert url in message and "404" in message and "\n" not in message
    assert list(tmp_path.iterdir()) == []


def test_only_http_urls_are_fetched(tmp_path: Path) -> None:
    local = tmp_path / "local.pth"
    local.write_bytes(b"PK")
    with pytest.raises(FetchError, match="only http:// and https://"):
        fetch(local.as_uri(), tmp_path / "copy.pth")
    assert not (tmp_path / "copy.pth").exists()


def test_unanswered_request_times_out(server: FileServer, tmp_path: Path) -> None:
    server.delay = 1.0
    with pytest.raises(FetchError, match="no answer within 0.2 s"):
        fetch(server.url("model.pth"), tmp_path / "model.pth", timeout=0.2)
    assert not (tmp_path / "model.pth").exists()


def test_complete_part_is_verified_and_installed_without_a_request(
    server: FileServer, payload: bytes, tmp_path: Path
) -> None:
    dest = tmp_path / "model.pth"
    part_path(dest).write_bytes(payload)
    fetch(server.url("model.pth"), dest, SIZE, sha(payload))
    assert server.requests == []
    assert dest.read_bytes() == payload


def test_corrupt_part_of_full_size_is_downloaded_again(
    server: FileServer, payload: bytes, tmp_path: Path
) -> None:
    dest = tmp_path / "model.pth"
    part_path(dest).write_bytes(bytes(SIZE))
    fetch(server.url("model.pth"), dest, SIZE, sha(payload))
    assert server.requests[-1].range is None
    assert dest.read_bytes() == payload


def test_part_the_server_cannot_resume_restarts_from_zero(
    server: FileServer, payload: bytes, tmp_path: Path
) -> None:
    dest = tmp_path / "model.pth"
    part_path(dest).write_bytes(bytes(SIZE + 10))  # longer than the file: HTTP 416
    fetch(server.url("model.pth"), dest)
    assert [r.status for r in server.requests] == [416, 200]
    assert dest.read_bytes() == payload


# --- samdesk models fetch ---------------------------------------------------------


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "models"
    monkeypatch.setenv("SAMDESK_MODELS", str(folder))
    return folder


def test_cli_fetch_installs_a_model_with_progress_on_stderr(
    server: FileServer, payload: bytes, models_dir: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    spec = dataclasses.replace(registry.MODELS["sam_vit_b"], name="mirror_sam",
                               size=SIZE, sha256=sha(payload))
    monkeypatch.setitem(registry.MODELS, spec.name, spec)
    assert main(["models", "fetch", "mirror_sam", "--url", server.url("model.pth")]) == 0
    out, err = capsys.readouterr()
    installed = models_dir / spec.filename
    assert installed.read_bytes() == payload
    assert f"fetched {installed}" in out
    assert "100.0%" in err and re.search(r"\d [kMG]?B/s", err)  # the rate, whatever its unit

    assert main(["models", "list"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines()
               if line.startswith("mirror_sam "))
    assert "installed" in row and str(installed) in row

    assert main(["models", "fetch", "mirror_sam", "--url", server.url("model.pth")]) == 0
    assert "already installed" in capsys.readouterr().out
    assert len(server.requests) == 1


def test_cli_fetch_of_the_wrong_file_installs_nothing(
    server: FileServer, models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "fetch", "sam_vit_b", "--url", server.url("model.pth")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("samdesk: error:") and "\n" not in err
    assert "375042383" in err
    assert checkpoints.installed("sam_vit_b") is None
    assert not any(models_dir.rglob("*.pth"))


def test_cli_fetch_groundingdino_brings_its_tokenizer_files(
    server: FileServer, payload: bytes, models_dir: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    words = server.files["small.txt"]
    server.files.update({"vocab.txt": words, "config.json": b"{}"})
    spec = dataclasses.replace(registry.MODELS["groundingdino_swint_ogc"],
                               size=SIZE, sha256=sha(payload))
    monkeypatch.setitem(registry.MODELS, spec.name, spec)
    monkeypatch.setattr(registry, "BERT_FILES", (
        RemoteFile("vocab.txt", "https://example.invalid/vocab.txt", len(words), sha(words)),
        RemoteFile("config.json", "https://example.invalid/config.json", 2, sha(b"{}")),
    ))
    base = server.url("")
    code = main(["models", "fetch", spec.name, "--url", server.url("model.pth"),
                 "--bert-url", base])
    assert code == 0, capsys.readouterr().err
    assert (paths.bert_dir() / "vocab.txt").read_bytes() == words
    assert (paths.bert_dir() / "config.json").read_bytes() == b"{}"
    assert checkpoints.resolve_checkpoint(spec) == models_dir / spec.filename
    assert {r.path for r in server.requests} == {"model.pth", "vocab.txt", "config.json"}


@pytest.mark.parametrize("url", ["http://[::1", "http://127.0.0.1:port/x.pth", "http:///x.pth"])
def test_cli_fetch_of_a_malformed_url_is_one_line_naming_it(
    url: str, models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "fetch", "sam_vit_b", "--url", url]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"samdesk: error: {url}: not a valid URL") and "\n" not in err
    assert not models_dir.exists() or not any(models_dir.iterdir())
