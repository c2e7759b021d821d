"""Read a YOLO (Ultralytics) dataset: its class names, its images and their label files.

The source is a ``data.yaml`` (any ``.yaml``), or a folder holding one, or a
folder with ``images/`` and ``labels/`` and no YAML (names then come from a
``classes.txt``, one a line, as labelImg and X-AnyLabeling write it).

* ``names`` is a list or a mapping ``index: name``; with only ``nc``, the
  classes are ``class_0 .. class_{nc-1}``.
* ``train``, ``val`` and ``test`` (each a folder, a ``.txt`` list of image
  paths, or a list of those) are found under ``path`` when that folder
  exists, else beside the YAML (a dataset that was moved); a ``../x`` that
  does not exist is read as ``x``, as Ultralytics does (Roboflow writes
  ``train: ../train/images`` beside ``train/``).
* Each image's label file is found as Ultralytics finds it: the last
  ``/images/`` of its path becomes ``/labels/``, its suffix ``.txt``. Label
  files that no image leads to are read too, named by their path under
  ``labels/``.

A YAML that cannot be read as a whole raises FormatError naming the file
and the field; a split that does not exist is a problem of the dataset,
listed, and the rest is read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from samdesk.errors import FormatError
from samdesk.imagefiles import is_image_name

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class LabelSource:
    """One label file and the name it gives its image: a path relative to its split
    folder (``sub/b.png``) or, for a label file no image leads to, the label's path
    under ``labels/`` (``sub/b.txt``). ``image`` is the dataset's image file (None
    when there is none)."""

    label: Path
    name: str
    image: Path | None


@dataclass
class YoloDataset:
    """What :func:`read_dataset` found: the root, class names, label sources, problems."""

    root: Path
    yaml_path: Path | None
    names: list[str]
    sources: list[LabelSource] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    names_known: bool = True


def find_yaml(folder: Path) -> Path | None:
    """``data.yaml`` in ``folder``, else its one ``.yaml``/``.yml`` with ``names`` or ``nc``."""
    for name in ("data.yaml", "data.yml"):
        if (folder / name).is_file():
            return folder / name
    found = [p for p in sorted(folder.glob("*.y*ml")) if p.suffix.lower() in (".yaml", ".yml")
             and isinstance(d := load_yaml_or_none(p), dict) and ("names" in d or "nc" in d)]
    return found[0] if len(found) == 1 else None


def load_yaml_or_none(path: Path) -> Any:
    """The parsed YAML of ``path``, or None when it cannot be read."""
    try:
        return _load_yaml(path)
    except FormatError:
        return None


def _load_yaml(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8-sig") as stream:
            return yaml.safe_load(stream)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FormatError(f"{path}: cannot be read as YAML: {detail}") from exc


def label_file(image: Path) -> Path:
    """Ultralytics' label file of ``image``: the last ``/images/`` becomes ``/labels/``."""
    text = os.fspath(image)
    sep_images, sep_labels = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return Path(sep_labels.join(text.rsplit(sep_images, 1)).rsplit(".", 1)[0] + ".txt")


def _names(document: dict[str, Any], path: Path) -> list[str]:
    names = document.get("names")
    if names is None:
        count = document.get("nc")
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise FormatError(f"{path}: names: missing (and nc is not a class count)")
        return [f"class_{i}" for i in range(count)]
    if isinstance(names, list):
        return [str(n) for n in names]
    if isinstance(names, dict):
        try:
            indexed = {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError) as exc:
            raise FormatError(f"{path}: names: keys must be class indices 0, 1, ...") from exc
        if sorted(indexed) != list(range(len(indexed))):
            raise FormatError(f"{path}: names: class indices must be 0..{len(indexed) - 1}")
        return [indexed[i] for i in range(len(indexed))]
    raise FormatError(f"{path}: names: must be a list or a mapping of index to name")


def _images_in(folder: Path) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root) / f for f in sorted(files)
                  if is_image_name(f) and not f.startswith(".")]
    return found


def _split_images(root: Path, entry: Any, key: str,
                  problems: list[tuple[str, str]]) -> list[tuple[Path, str]]:
    """``(image file, name relative to its split folder)`` for one split entry."""
    out: list[tuple[Path, str]] = []
    for value in entry if isinstance(entry, list) else [entry]:
        if not isinstance(value, str) or not value:
            problems.append((key, f"{value!r} is not a folder or file name"))
            continue
        place = root / value
        if not place.exists() and value.startswith("../"):  # Roboflow: ../train/images
            place = root / value[3:]
        if place.is_dir():
            out += [(p, p.relative_to(place).as_posix()) for p in _images_in(place)]
        elif place.is_file():
            out += _listed(place, root)
        else:
            problems.append((f"{key}: {value}", f"{place} does not exist"))
    return out


def _listed(list_file: Path, root: Path) -> list[tuple[Path, str]]:
    """Images named in a ``.txt`` split list (``./`` is the list's folder, else ``root``)."""
    out = []
    text = list_file.read_text(encoding="utf-8-sig", errors="replace")
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        path = list_file.parent / line[2:] if line.startswith("./") else root / line
        name = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
        out.append((path, name.removeprefix("images/")))
    return out


def _root(document: dict[str, Any], yaml_path: Path) -> Path:
    """``path`` when it names a folder (relative to the YAML's folder), else that folder."""
    given = document.get("path")
    if isinstance(given, str) and given:
        place = Path(given) if Path(given).is_absolute() else yaml_path.parent / given
        if place.is_dir():
            return place
    return yaml_path.parent


def read_dataset(source: Path) -> YoloDataset:
    """The dataset at ``source`` (a YAML file, or a folder); see the module docstring."""
    yaml_path = source if source.is_file() else find_yaml(source)
    if yaml_path is None:
        dataset = YoloDataset(root=source, yaml_path=None, names=_classes_txt(source))
        dataset.names_known = bool(dataset.names)
        images = [(p, p.relative_to(source / "images").as_posix())
                  for p in _images_in(source / "images")] if (source / "images").is_dir() else []
    else:
        document = _load_yaml(yaml_path)
        if not isinstance(document, dict):
            raise FormatError(f"{yaml_path}: not a YOLO data YAML (a mapping with names "
                              "and train)")
        dataset = YoloDataset(root=_root(document, yaml_path), yaml_path=yaml_path,
                              names=_names(document, yaml_path))
        images = []
        for key in SPLITS:
            if document.get(key):
                images += _split_images(dataset.root, document[key], key, dataset.problems)
    seen: set[Path] = set()
    for image, name in images:
        label = label_file(image)
        if label.resolve() not in seen and label.is_file():
            seen.add(label.resolve())
            dataset.sources.append(LabelSource(label, name, image))
    labels_folder = dataset.root / "labels"
    if labels_folder.is_dir():  # label files no image leads to: named by their path
        for root, dirs, files in os.walk(labels_folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for file in sorted(files):
                label = Path(root) / file
                if (file.endswith(".txt") and file != "classes.txt"
                        and label.resolve() not in seen):
                    seen.add(label.resolve())
                    dataset.sources.append(
                        LabelSource(label, label.relative_to(labels_folder).as_posix(), None))
    return dataset


def _classes_txt(folder: Path) -> list[str]:
    for place in (folder / "classes.txt", folder / "labels" / "classes.txt"):
        if place.is_file():
            text = place.read_text(encoding="utf-8-sig", errors="replace")
            return [line.strip() for line in text.splitlines() if line.strip()]
    return []
