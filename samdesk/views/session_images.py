"""Opening an image of a :class:`~samdesk.views.session.Session`, off the GUI thread.

A mixin: the session provides ``project``, ``store``, ``client``, ``view``,
the signals and the prompt state. The file's header and hash go into the
project and its pixels are decoded on a pool thread
(:class:`~samdesk.views.image_loader.ImageLoader`); the canvas says
"Loading…" meanwhile, and only the latest request's result is shown. An image
already decoded (in ``store``) is shown at once. A file that cannot be read
shows its error over an empty canvas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from samdesk import errorlog
from samdesk.annotations import ImageRecord
from samdesk.errors import ImageReadError
from samdesk.inference.worker.requests import ImageRef
from samdesk.views.qtutil import guarded

if TYPE_CHECKING:
    from samdesk.image_store import ImageStore
    from samdesk.inference.worker.client import InferenceClient
    from samdesk.project import Project
    from samdesk.views.image_loader import ImageLoader

PREFETCH_AHEAD = 2


class ImageOpening:
    """open_image and what follows it: decode, focus, prefetch, error."""

    project: Project
    store: ImageStore
    client: InferenceClient
    view: Any
    image: ImageRecord | None
    ref: ImageRef | None
    rgb: np.ndarray | None
    embedding: str
    selected: list[int]
    loading: bool
    _load_id: int
    _loader: ImageLoader
    image_changed: Any
    image_loaded: Any
    embedding_changed: Any
    message: Any

    if TYPE_CHECKING:  # provided by the session and LayerEdits
        def clear_prompts(self) -> None: ...
        def _refresh_layers(self) -> None: ...

    def open_image(self, image_id: int) -> None:
        """Show image ``image_id``, ask for its embedding, prefetch the next ones.

        An image already decoded is shown at once; any other is read on a pool
        thread while the canvas says "Loading…", and :attr:`image_loaded`
        follows (also when it fails: the canvas then shows the error).
        """
        self.clear_prompts()
        self.selected = []
        self._load_id += 1
        request = self._load_id
        record = self.project.image(image_id)
        self.image, self.ref, self.rgb, self.embedding = record, None, None, "none"
        cached = None
        if record.error is None and record.content_hash and record.width:
            cached = self.store.peek(self.project.image_file(record))
        if cached is not None:
            self.loading = False
            self._loader.submit(request, lambda: (record, cached, self._next_refs(image_id)))
            self._show_loaded(record, cached)
            self.image_changed.emit(image_id)
            self.image_loaded.emit(image_id)
            return
        self.loading = True
        self.embedding_changed.emit("loading")  # the last image's state is not this one's
        self.view.set_image(None)
        self.view.set_message(f"Loading {record.path}…")
        self._refresh_layers()
        self.image_changed.emit(image_id)
        self._loader.submit(request, lambda: self._read(image_id))

    def _read(self, image_id: int) -> tuple[ImageRecord, np.ndarray, list[ImageRef]]:
        """On a pool thread: size and hash into the project, the display pixels,
        and the next images to prefetch. Raises :class:`ImageReadError`."""
        record = self.project.ensure_image_info(image_id)
        try:
            if record.error is not None:
                raise ImageReadError(record.path, record.error)
            rgb = self.store.get(self.project.image_file(record))
        except ImageReadError as exc:
            if record.error is None:
                self.project.mark_error(image_id, exc.reason)
            raise ImageReadError(record.path, exc.reason) from None
        return record, rgb, self._next_refs(image_id)

    def _next_refs(self, image_id: int) -> list[ImageRef]:
        """The next PREFETCH_AHEAD readable images after ``image_id`` (reads headers)."""
        ids = [r.id for r in self.project.images()]
        ahead = ids[ids.index(image_id) + 1:][:PREFETCH_AHEAD] if image_id in ids else []
        refs = []
        for next_id in ahead:
            record = self.project.ensure_image_info(next_id)
            if record.error is None and record.content_hash:
                refs.append(ImageRef(self.project.image_file(record),
                                     self.project.embedding_key(record)))
        return refs

    @guarded("open image")
    def _on_loaded(self, request: int, result: Any, error: BaseException | None) -> None:
        """A pool thread finished reading; only the latest request is shown."""
        if request != self._load_id or self.image is None:
            return
        if not self.loading:  # shown from the cache already: only the prefetch was left
            if error is None and result[2]:
                self.client.prefetch(result[2])
            return
        self.loading = False
        if error is not None:
            line = (str(error) if isinstance(error, ImageReadError)
                    else errorlog.report(error, f"open {self.image.path}"))
            if self.image.path not in line:  # "out of memory" alone names no file
                line = f"{self.image.path}: {line}"
            self.message.emit(line)
            self.view.set_image(None)
            self.view.set_message(line)
            self.embedding_changed.emit("none")
            self._refresh_layers()
            self.image_loaded.emit(self.image.id)
            return
        record, rgb, refs = result
        self._show_loaded(record, rgb)
        if refs:
            self.client.prefetch(refs)
        self.image_loaded.emit(record.id)

    def _show_loaded(self, record: ImageRecord, rgb: np.ndarray) -> None:
        """Draw the decoded ``rgb`` and ask the worker for its embedding."""
        self.image, self.rgb = record, rgb
        self.view.set_message(None)
        self.view.set_image(rgb)
        if record.width and record.height and rgb.shape[:2] != (record.height, record.width):
            self.view.set_image_size(record.width, record.height)
        self.ref = ImageRef(self.project.image_file(record), self.project.embedding_key(record))
        self.embedding = "queued"
        self.embedding_changed.emit("queued")
        self.client.focus(self.ref)
        self._refresh_layers()
