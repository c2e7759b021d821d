"""The notice shown when images were replaced by files of another size.

Opening a project looks again at files that changed on disk
(:mod:`samdesk.project_files`). When a file now has another size than the
masks made on it, those masks cannot be drawn nor exported. The notice is
non-modal: it lists each such image with its mask count, and offers to keep
the masks (for a file that will be put back) or to drop them (one undoable
edit). "Later" leaves everything as it is; the notice comes back next time.
"""

from __future__ import annotations

from PySide6.QtWidgets import QMessageBox, QWidget

from samdesk.errors import SamdeskError
from samdesk.imagefiles import display_path
from samdesk.project import Project

MAX_LISTED = 10
"""Images named in the notice; more are counted."""


class ChangedImagesNotice(QMessageBox):
    """Non-modal: which images no longer fit their masks; Keep, Drop or Later."""

    def __init__(self, project: Project, image_ids: list[int], counts: dict[int, int],
                 parent: QWidget | None = None) -> None:
        super().__init__(QMessageBox.Icon.Warning, "Replaced images", "", parent=parent)
        self.setModal(False)
        self.project = project
        self.image_ids = image_ids
        lines = []
        for image_id in image_ids[:MAX_LISTED]:
            record = project.image(image_id)
            lines.append(f"{display_path(record.path)}: {counts[image_id]} masks "
                         f"(the image is {record.width}x{record.height} now)")
        if len(image_ids) > MAX_LISTED:
            lines.append(f"... and {len(image_ids) - MAX_LISTED} more images")
        self.setText(f"{len(image_ids)} images were replaced by a file of another size; "
                     "their masks no longer fit and are neither drawn nor exported.")
        self.setInformativeText("\n".join(lines))
        self.keep_button = self.addButton("Keep masks", QMessageBox.ButtonRole.AcceptRole)
        self.keep_button.setToolTip("Keep them, e.g. to put the old files back")
        self.drop_button = self.addButton("Drop masks", QMessageBox.ButtonRole.DestructiveRole)
        self.drop_button.setToolTip("Delete them (Ctrl+Z brings them back)")
        self.addButton("Later", QMessageBox.ButtonRole.RejectRole)
        self.buttonClicked.connect(self._clicked)
        self.outcome = ""
        """What the person chose, as a line for the status bar ("" until then)."""

    def _clicked(self, button: object) -> None:
        try:
            if button is self.keep_button:
                self.project.keep_unfitting_masks(self.image_ids)
                self.outcome = f"kept the masks of {len(self.image_ids)} replaced images"
            elif button is self.drop_button:
                dropped = self.project.drop_unfitting_masks(self.image_ids)
                self.outcome = f"dropped {dropped} masks that no longer fit"
        except SamdeskError as exc:
            self.outcome = str(exc)


def show_notice(project: Project, parent: QWidget | None = None) -> ChangedImagesNotice | None:
    """Show the notice when some changed image has masks that no longer fit; else None."""
    unfitting = project.unfitting_masks()
    if not unfitting:
        return None
    changed = [r.id for r in project.images() if r.changed and r.id in unfitting]
    if not changed:
        return None
    notice = ChangedImagesNotice(project, changed, {i: len(unfitting[i]) for i in changed},
                                 parent)
    notice.show()
    return notice
