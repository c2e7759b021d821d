"""Installed model files: where they live, which are there, and how to get them.

A checkpoint is installed when either

- a person registered a file they already have with :func:`add` (recorded in
  ``models.json`` in the models directory; the file is never copied), or
- the official file lies in the models directory under its official name,
  which is where :func:`fetch_model` puts it.

GroundingDINO also needs its BERT tokenizer files in ``paths.bert_dir()``.
Nothing is downloaded implicitly: :func:`resolve_checkpoint` only looks, and
its error names the command that installs the model.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from samdesk.errors import EngineError, FormatError
from samdesk.inference.models import paths, registry
from samdesk.inference.models.fetch import ProgressPrinter, download, sha256_file
from samdesk.inference.models.registry import DETECTOR, ModelSpec, get_spec

INDEX_NAME = "models.json"
INDEX_VERSION = 1
DEFAULT_DETECTOR = "groundingdino_swint_ogc"
# First bytes of a torch.save file: a zip archive (PyTorch >= 1.6) or a pickle.
_CHECKPOINT_MAGIC = (b"PK\x03\x04", b"\x80")


def index_path() -> Path:
    """The JSON file recording checkpoints registered with :func:`add`."""
    return paths.models_dir() / INDEX_NAME


def default_path(spec: ModelSpec) -> Path:
    """Where ``samdesk models fetch`` puts the checkpoint of ``spec``."""
    if spec.filename is None:
        raise EngineError(f"model {spec.name} needs no checkpoint")
    return paths.models_dir() / spec.filename


def installed(name: str) -> Path | None:
    """The checkpoint file of model ``name``, or None if it is not installed.

    A registered file wins over one in the models directory. Models that need
    no checkpoint (GrabCut) return None: check ``spec.needs_checkpoint``.
    """
    spec = get_spec(name)
    if not spec.needs_checkpoint:
        return None
    entry = _read_index().get(name)
    if entry is not None and Path(entry["path"]).is_file():
        return Path(entry["path"])
    fetched = default_path(spec)
    return fetched if fetched.is_file() else None


def missing_bert_files() -> list[str]:
    """Names of GroundingDINO's tokenizer files absent from ``paths.bert_dir()``."""
    folder = paths.bert_dir()
    return [f.filename for f in registry.BERT_FILES if not (folder / f.filename).is_file()]


def resolve_checkpoint(spec: ModelSpec) -> Path:
    """The installed checkpoint of ``spec``, or an :class:`EngineError` saying
    how to install it. Never downloads anything."""
    name = spec.name
    if not spec.needs_checkpoint:
        raise EngineError(f"model {name} needs no checkpoint")
    path = installed(name)
    if path is None:
        entry = _read_index().get(name)
        if entry is not None:
            raise EngineError(
                f"model {name} was registered at {entry['path']} but that file is gone: "
                f"run `samdesk models add {name} FILE` or `samdesk models fetch {name}`"
            )
        raise EngineError(
            f"model {name} is not installed: run `samdesk models fetch {name}` "
            f"or `samdesk models add {name} FILE`"
        )
    if spec.family in registry.FAMILIES_NEEDING_BERT:
        missing = missing_bert_files()
        if missing:
            raise EngineError(
                f"model {name} needs the BERT tokenizer files {', '.join(missing)} in "
                f"{paths.bert_dir()}: run `samdesk models fetch {name}`"
            )
    return path


def resolve_detector(name: str | None = None) -> tuple[ModelSpec, Path]:
    """The text-prompt detector to use and its checkpoint.

    With ``name`` None, the first installed detector (Swin-T before Swin-B);
    if none is installed the error names ``groundingdino_swint_ogc``.
    """
    if name is not None:
        spec = get_spec(name)
        if spec.kind != DETECTOR:
            raise EngineError(f"model {name} is not a text detector")
        return spec, resolve_checkpoint(spec)
    for spec in registry.MODELS.values():
        if spec.kind == DETECTOR and installed(spec.name) is not None:
            return spec, resolve_checkpoint(spec)
    raise EngineError(
        f"text prompts need GroundingDINO, which is not installed: run "
        f"`samdesk models fetch {DEFAULT_DETECTOR}` or "
        f"`samdesk models add {DEFAULT_DETECTOR} FILE`"
    )



class NotOfficialError(EngineError):
    """:func:`add` without ``force``: the file is a PyTorch checkpoint, but not the
    official one (another size or sha256): a fine-tuned checkpoint, maybe."""


def add(name: str, file: Path | str, force: bool = False) -> Path:
    """Register ``file`` (already on disk) as the checkpoint of model ``name``.

    The file must look like a PyTorch checkpoint. Where the official size or
    sha256 is known it must match, unless ``force`` (a fine-tuned checkpoint
    of the same architecture). The path is recorded, the file is not copied.
    Returns the absolute path recorded.
    """
    spec = get_spec(name)
    if not spec.needs_checkpoint:
        raise EngineError(f"model {name} needs no checkpoint file")
    path = Path(file).expanduser()
    if not path.is_file():
        raise EngineError(f"{path}: no such file")
    path = path.resolve()
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(4)
    if not head.startswith(_CHECKPOINT_MAGIC):
        raise EngineError(f"{path}: not a PyTorch checkpoint (neither a zip nor a pickle file)")
    hint = "; pass --force to register a different (e.g. fine-tuned) checkpoint"
    if spec.size is not None and size != spec.size and not force:
        raise NotOfficialError(
            f"{path}: {size} bytes, but the official {spec.filename} has {spec.size}{hint}"
        )
    digest = None
    if spec.sha256 is not None and not force:
        digest = sha256_file(path)
        if digest != spec.sha256:
            raise NotOfficialError(
                f"{path}: sha256 {digest} differs from the official {spec.filename}{hint}"
            )
    models = _read_index()
    models[name] = {
        "path": str(path),
        "size": size,
        "sha256": digest,
        "added": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _write_index(models)
    return path


@dataclass(frozen=True)
class FetchedFile:
    """One file :func:`fetch_model` dealt with; ``downloaded`` False if it was there."""

    path: Path
    downloaded: bool


def fetch_model(
    name: str,
    url: str | None = None,
    bert_url: str | None = None,
    force: bool = False,
    stream: IO[str] | None = None,
) -> list[FetchedFile]:
    """Download model ``name`` (and GroundingDINO's tokenizer files) if missing.

    ``url`` replaces the checkpoint's download URL (a mirror); ``bert_url`` is
    a base URL the tokenizer file names are appended to. The known size and
    sha256 are checked whatever the URL. ``force`` downloads again even what
    is installed. Progress goes to ``stream`` (e.g. stderr) when given.
    """
    spec = get_spec(name)
    if not spec.needs_checkpoint:
        raise EngineError(f"model {name} needs no download")
    source = url or spec.url
    if source is None:
        raise EngineError(f"model {name} has no download URL: pass --url")
    done: list[FetchedFile] = []
    current = installed(name)
    if current is None or force:
        dest = default_path(spec)
        fetched = _fetch_one(source, dest, spec.size, spec.sha256, spec.name, stream)
        models = _read_index()
        if models.pop(name, None) is not None:  # the fetched file replaces a registered one
            _write_index(models)
        done.append(FetchedFile(dest, fetched))
    else:
        done.append(FetchedFile(current, False))
    if spec.family in registry.FAMILIES_NEEDING_BERT:
        for remote in registry.BERT_FILES:
            target = paths.bert_dir() / remote.filename
            if target.is_file() and not force:
                done.append(FetchedFile(target, False))
                continue
            source = bert_url.rstrip("/") + "/" + remote.filename if bert_url else remote.url
            fetched = _fetch_one(source, target, remote.size, remote.sha256, remote.filename,
                                 stream)
            done.append(FetchedFile(target, fetched))
    return done


def _fetch_one(
    url: str, dest: Path, size: int | None, sha256: str | None, label: str,
    stream: IO[str] | None,
) -> bool:
    """Fetch one file; False when another process installed it meanwhile."""
    printer = ProgressPrinter(label, stream) if stream is not None else None

    def waiting() -> None:
        if stream is not None:
            stream.write(f"samdesk: waiting for another download of {dest.name} to finish\n")
            stream.flush()

    try:
        return download(url, dest, expected_size=size, sha256=sha256, progress=printer,
                        on_wait=waiting).downloaded
    finally:
        if printer is not None:
            printer.close()


def _read_index() -> dict[str, dict[str, Any]]:
    path = index_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise FormatError(f"{path}: unreadable model index ({exc})") from None
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("path"), str) for v in models.values()
    ):
        raise FormatError(f"{path}: not a samdesk model index (no valid 'models' object)")
    return models


def _write_index(models: dict[str, dict[str, Any]]) -> None:
    """Replace the index atomically: a crash leaves the old or the new file."""
    path = index_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    payload = {"version": INDEX_VERSION, "models": models}
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
