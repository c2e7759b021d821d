"""Shared test set-up: offscreen Qt, and no QThread left running after a test."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
