"""Find the project image a label file or a mask PNG belongs to, by its path without suffix.

YOLO labels (``labels/sub/b.txt``) and mask PNGs (``SegmentationClass/b.png``)
name their image by its relative path with another suffix. :class:`StemMatcher`
takes such a path (``sub/b.txt``) and finds the one project image whose path
without its suffix is the same (``sub/b.jpg``); failing that, the one
whose path ends with the longest tail of it (``train/b`` finds ``b.png`` or
``photos/b.png``). A name that fits several images (``a.jpg`` and ``a.png``)
is reported, never guessed. A name that is a project image's whole path
less its own suffix (``a.jpg`` from ``a.jpg.png``) is that image.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import PurePosixPath

from samdesk.annotations import ImageRecord


def stem_of(path: str) -> str:
    """``path`` without the suffix of its last part (``sub/b.jpg`` -> ``sub/b``)."""
    pure = PurePosixPath(path)
    return str(pure.with_suffix("")) if pure.suffix else path


class StemMatcher:
    """Project images by relative path without suffix."""

    def __init__(self, records: list[ImageRecord]) -> None:
        self._by_path = {r.path: r for r in records}
        self._by_stem: dict[str, list[ImageRecord]] = defaultdict(list)
        self._by_name: dict[str, list[ImageRecord]] = defaultdict(list)
        for record in records:
            stem = stem_of(record.path)
            self._by_stem[stem].append(record)
            self._by_name[PurePosixPath(stem).name].append(record)

    def match(self, name: str) -> tuple[ImageRecord | None, str]:
        """The image ``name`` (a relative path, ``/`` separators, whose suffix is not the
        image's) stands for, or None and why none does: the image of that whole path,
        else of that path without its suffix (``a.jpg.png``), else by stem."""
        parts = [p for p in PurePosixPath(name).parts if p not in ("/", ".")]
        if not parts:
            return None, "empty name"
        joined = "/".join(parts)
        for whole in (joined, stem_of(joined)):
            if whole in self._by_path:
                return self._by_path[whole], ""
        parts = PurePosixPath(stem_of(joined)).parts
        candidates = self._by_name.get(parts[-1], [])
        for keep in range(len(parts), 0, -1):
            tail = "/".join(parts[-keep:])
            fits = [r for r in candidates
                    if (s := stem_of(r.path)) == tail or s.endswith("/" + tail)]
            if len(fits) == 1:
                return fits[0], ""
            if len(fits) > 1 and (keep == len(parts) or keep == 1):
                shown = ", ".join(sorted(r.path for r in fits)[:3])
                return None, f"fits {len(fits)} images of the project ({shown})"
        return None, "no image of the project has this name"
