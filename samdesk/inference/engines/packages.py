"""The optional packages a model family needs, checked without importing them.

The base install gives SAM, SAM 2 and GrabCut. GroundingDINO, the text
detector, is the ``text`` extra (``pip install samdesk[text]``):
``groundingdino-py`` pins ``supervision==0.6.0`` and does not run on
``transformers`` 5, so installing it replaces a newer supervision or
transformers, which the base install leaves alone. Without the extra, every
way to the text detector (``samdesk segment --text``, ``samdesk batch``, the
window's text tool, the server's text route) says so in one line, before any
checkpoint is looked for.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from importlib import metadata, util

from samdesk.errors import EngineError

TEXT_EXTRA = ("the text detector needs `pip install samdesk[text]` "
              "(GroundingDINO; it pins supervision 0.6.0 and transformers < 5)")
"""The line that says how to get the text detector and what it costs."""


@dataclass(frozen=True)
class Needed:
    """One package a family imports: its import name, its pip name, a major version
    it must stay below (None: any)."""

    module: str
    distribution: str
    below_major: int | None = None


FAMILY_NEEDS: dict[str, tuple[tuple[Needed, ...], str]] = {
    "groundingdino": ((Needed("groundingdino", "groundingdino-py"),
                       Needed("transformers", "transformers", below_major=5)), TEXT_EXTRA),
}
"""family -> (the packages its engine imports, the line that says how to install them)."""


def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution`` (a pip name), None when it is not installed."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _importable(module: str) -> bool:
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _major(version: str) -> int | None:
    match = re.match(r"\d+", version)
    return int(match.group()) if match else None


def missing(family: str) -> str | None:
    """One line saying what to install for ``family`` and why, None when nothing is missing.

    Imports none of the packages (listing or checking never loads torch).
    """
    needs, how = FAMILY_NEEDS.get(family, ((), ""))
    problems: list[str] = []
    for need in needs:
        if not _importable(need.module):
            problems.append(f"{need.distribution} is not installed")
            continue
        version = installed_version(need.distribution)
        major = _major(version) if version else None
        if need.below_major is not None and major is not None and major >= need.below_major:
            problems.append(f"{need.distribution} {version} is installed")
    return f"{how}; {', '.join(problems)}" if problems else None


def require(family: str) -> None:
    """Raise :class:`EngineError` with the line of :func:`missing` when ``family`` lacks one."""
    problem = missing(family)
    if problem is not None:
        raise EngineError(problem)
