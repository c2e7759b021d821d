"""Where model files live: ``$SAMDESK_MODELS``, else the user data directory."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

BERT_DIRNAME = "bert-base-uncased"
"""Folder under the models directory holding GroundingDINO's BERT tokenizer files."""


def models_dir() -> Path:
    """The folder model checkpoints are fetched to and looked up in."""
    env = os.environ.get("SAMDESK_MODELS")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir("samdesk", appauthor=False)) / "models"


def bert_dir() -> Path:
    """The local BERT tokenizer folder GroundingDINO loads (never a hub)."""
    return models_dir() / BERT_DIRNAME
