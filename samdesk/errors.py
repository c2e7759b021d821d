"""Errors a person can act on. Each message names the file or field at fault."""

from __future__ import annotations


class SamdeskError(Exception):
    """Base of every error samdesk reports to a person as one line."""


class ImageReadError(SamdeskError):
    """An image file could not be decoded; ``path`` names it."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class ProjectError(SamdeskError):
    """The project store cannot be opened or written."""


class ProjectLockedError(ProjectError):
    """Another samdesk process has this project open."""


class StoreWriteError(ProjectError):
    """A write to the project store failed and was rolled back: nothing of it was saved."""


class StoreFullError(StoreWriteError):
    """The disk holding the project store is full; the message names the store file."""


class StoreLockedError(StoreWriteError):
    """Another program holds a lock on the store file for longer than samdesk waits."""


class FormatError(SamdeskError):
    """An input file (COCO JSON, checkpoint...) is not what it should be."""


class EngineError(SamdeskError):
    """A model problem a person can act on (bad prompt, missing checkpoint...)."""


class CliError(SamdeskError):
    """A command failed in a way the user can fix; printed as one line."""
