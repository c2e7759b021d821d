"""Pending boxes in the window: drawn on the canvas, made into masks on one key.

A mixin of :class:`~samdesk.views.session.Session`. The open image's
pending boxes (:mod:`samdesk.project_boxes`) are drawn as dashed outlines in
their label's colour. :meth:`BoxesToMasks.boxes_to_masks` (G: this image;
Shift+G: every image) asks the inference worker for a mask per box
(:meth:`~samdesk.inference.worker.client.InferenceClient.segment_boxes`, one
embedding per image, never on the GUI thread); each image's answer is stored
as one undoable edit: its masks added with their boxes' labels and those
boxes removed. Image files not yet looked at are read (size, hash) on a pool
thread first. A box deleted or already made into a mask meanwhile is left
alone; one whose mask came out empty stays pending.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from samdesk.errors import SamdeskError
from samdesk.inference.worker.requests import BoxMasks, Failure, ImageRef
from samdesk.views.image_loader import ImageLoader
from samdesk.views.pending_items import UNLABELLED_COLOR, PendingBoxView
from samdesk.views.qtutil import guarded

if TYPE_CHECKING:
    from samdesk.annotations import ImageRecord
    from samdesk.inference.worker.client import InferenceClient
    from samdesk.project import Project
    from samdesk.project_boxes import PendingBox


@dataclass(frozen=True)
class _BoxJob:
    """Boxes of one image sent to the worker, in the order of their masks."""

    image_id: int
    box_ids: tuple[int, ...]


class BoxesToMasks:
    """Pending boxes: drawn, and made into masks through the worker."""

    project: Project
    client: InferenceClient
    image: ImageRecord | None
    ref: ImageRef | None
    view: Any
    message: Any

    def _init_boxes(self) -> None:
        self._box_jobs: dict[int, _BoxJob] = {}  # worker request id -> its boxes
        self._box_reads = 0  # the latest request for image refs read on the pool thread
        self._box_loader = ImageLoader(self, threads=1)  # type: ignore[arg-type]
        self._box_loader.finished.connect(self._on_box_refs)
        self.client.box_masks.connect(self._on_box_masks)
        self.client.failed.connect(self._on_box_failed)

    def _close_boxes(self) -> None:
        self._box_reads += 1
        self._box_loader.wait()
        self.client.box_masks.disconnect(self._on_box_masks)
        self.client.failed.disconnect(self._on_box_failed)

    # ------------------------------------------------------------------ canvas
    def pending_box_views(self) -> list[PendingBoxView]:
        """What the canvas draws for the open image's pending boxes."""
        if self.image is None:
            return []
        labels = {label.id: label for label in self.project.labels()}
        views = []
        for box in self.project.pending_boxes(self.image.id):
            label = labels.get(box.label_id) if box.label_id is not None else None
            views.append(PendingBoxView(box.id, box.box,
                                        label.color if label else UNLABELLED_COLOR,
                                        label.name if label else ""))
        return views

    def _refresh_layers(self) -> None:
        super()._refresh_layers()  # type: ignore[misc]
        if hasattr(self.view, "set_pending_boxes"):
            self.view.set_pending_boxes(self.pending_box_views())

    @property
    def boxes_in_progress(self) -> int:
        """Boxes sent to the worker and not answered yet."""
        return sum(len(job.box_ids) for job in self._box_jobs.values())

    # ---------------------------------------------------------------- requests
    def boxes_to_masks(self, every_image: bool = False) -> int:
        """Ask for a mask of each pending box of the open image (or of every image).

        Returns how many boxes were sent; boxes already on their way are not
        sent twice. Images whose size and hash are not known yet are read on
        a pool thread first.
        """
        if self.project.read_only:
            self.message.emit(f"The project is open read-only ({self.project.read_only_reason}); "
                              "no mask was made")
            return 0
        if not every_image and self.image is None:
            return 0
        waiting = {box_id for job in self._box_jobs.values() for box_id in job.box_ids}
        boxes = [b for b in self.project.pending_boxes(None if every_image else self.image.id)
                 if b.id not in waiting]
        if not boxes:
            where = "in the project" if every_image else "on this image"
            busy = f" ({len(waiting)} are being made)" if waiting else ""
            self.message.emit(f"No pending boxes {where}{busy}")
            return 0
        by_image: dict[int, list[PendingBox]] = {}
        for box in boxes:
            by_image.setdefault(box.image_id, []).append(box)
        if self.image is not None and self.ref is not None and self.image.id in by_image:
            self._send_boxes(self.ref, by_image.pop(self.image.id))  # the open image first
        if by_image:
            self._box_reads += 1
            project = self.project

            def read() -> list[tuple[ImageRef | None, list[PendingBox], str]]:
                refs = []
                for image_id, its in by_image.items():
                    record = project.ensure_image_info(image_id)
                    key = project.embedding_key(record) if record.error is None else ""
                    ref = ImageRef(project.image_file(record), key) if key else None
                    refs.append((ref, its, record.error or record.path))
                return refs

            self._box_loader.submit(self._box_reads, read)
        count = len(boxes)
        images = len({b.image_id for b in boxes})
        self.message.emit(f"Making masks from {count} box{'es' * (count != 1)}"
                          + (f" on {images} images" if images > 1 else "") + "…")
        return count

    def _send_boxes(self, ref: ImageRef, boxes: list[PendingBox]) -> None:
        request = self.client.segment_boxes(ref, [b.box for b in boxes])
        self._box_jobs[request] = _BoxJob(boxes[0].image_id, tuple(b.id for b in boxes))

    @guarded("read images for the boxes")
    def _on_box_refs(self, request: int, result: Any, error: BaseException | None) -> None:
        if request != self._box_reads:
            return
        if error is not None:
            raise error
        waiting = {box_id for job in self._box_jobs.values() for box_id in job.box_ids}
        for ref, boxes, why in result:
            boxes = [b for b in boxes if b.id not in waiting]  # sent meanwhile (G)
            if not boxes:
                continue
            if ref is None:
                self.message.emit(f"{why}: cannot be read; its {len(boxes)} boxes are kept")
            else:
                self._send_boxes(ref, boxes)

    # ----------------------------------------------------------------- results
    @guarded("masks from boxes")
    def _on_box_masks(self, result: BoxMasks) -> None:
        job = self._box_jobs.pop(result.request_id, None)
        if job is None:
            return
        still = {b.id for b in self.project.pending_boxes(job.image_id)}
        made = empty = 0
        record = self.project.image(job.image_id)
        try:
            with self.project.batch(f"Masks from {len(job.box_ids)} boxes"):
                for box_id, rle, score in zip(job.box_ids, result.masks, result.scores,
                                              strict=True):
                    if box_id not in still:
                        continue  # deleted, undone or made into a mask meanwhile
                    if rle is None:
                        empty += 1
                        continue
                    self.project.resolve_pending_box(box_id, rle, score=score,
                                                     prompts={"model": self._model_label()})
                    made += 1
        except SamdeskError as exc:
            self.message.emit(f"{record.path}: {exc}; its boxes are kept")
            return
        kept = f"; {empty} gave an empty mask and stay{'s' * (empty == 1)} pending" \
            if empty else ""
        left = f" ({self.boxes_in_progress} boxes still on their way)" \
            if self._box_jobs else ""
        self.message.emit(f"{made} mask{'s' * (made != 1)} made from boxes on "
                          f"{record.path}{kept}{left}")

    def _model_label(self) -> str:
        return str(getattr(self, "model_name", "") or "")

    @guarded("masks from boxes")
    def _on_box_failed(self, failure: Failure) -> None:
        """The window shows the failure's line; here the boxes stop being on their way."""
        self._box_jobs.pop(failure.request_id, None)
