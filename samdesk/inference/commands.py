"""The ``samdesk`` sub-commands that work with models.

:func:`register` adds each command's parser; each command lives in its own
small ``cmd_*.py`` module with a ``register(sub)`` function, and imports torch
(if at all) only inside its run functions, so ``samdesk models list`` and
``samdesk --help`` stay fast.
"""

from __future__ import annotations

from typing import Any

from samdesk.inference import cmd_batch, cmd_models, cmd_segment

COMMAND_MODULES = (cmd_models, cmd_segment, cmd_batch)


def register(sub: Any) -> None:
    """Add every inference command to the ``samdesk`` sub-parsers ``sub``."""
    for module in COMMAND_MODULES:
        module.register(sub)
