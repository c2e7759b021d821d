"""Killing samdesk with SIGKILL at any moment loses no committed edit."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from samdesk import masks
from samdesk.project import Project

WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from samdesk import masks
    from samdesk.project import Project

    project = Project.open(sys.argv[1])
    image = project.images()[0]
    label = project.label_by_name("thing") or project.add_label("thing")
    i = 0
    while True:
        mask = np.zeros((60, 80), bool)
        mask[i % 60, :] = True
        mask[:, i % 80] = True
        if i % 5 == 4:  # every fifth step is a big batch: all of it or none of it
            with project.batch("many"):
                for _ in range(50):
                    project.add_annotation(image.id, masks.encode(mask), label.id)
        else:
            layer = project.add_annotation(image.id, masks.encode(mask), label.id)
            project.update_annotation(layer.id, visible=False)
        print(i, flush=True)
        i += 1
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_sigkill_while_writing_loses_no_committed_edit(tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    Image.fromarray(np.zeros((60, 80, 3), np.uint8)).save(folder / "a.png")
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(folder)],
                            stdout=subprocess.PIPE, text=True, env=env)
    done = -1
    try:
        while done < 24:
            line = proc.stdout.readline()
            assert line, "writer died early"
            done = int(line)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    db = folder / ".samdesk" / "project.sqlite"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with Project.open(folder) as project:  # the dead writer's lock is gone
        layers = project.annotations()
        steps = done + 1
        batches = sum(1 for i in range(steps) if i % 5 == 4)
        assert len(layers) >= (steps - batches) + 50 * batches
        singles_and_batches = len(layers) - (steps - batches)
        # a step interrupted mid-way is either all there or not at all
        assert singles_and_batches % 50 in (0, 1)
        first = masks.decode(layers[0].rle)
        assert first[0, :].all() and first[:, 0].all() and first.sum() == 80 + 60 - 1
        # the undo history survived the kill with the edits: undoing every step
        # takes the project back to no masks and no labels, redo brings them back
        undone = 0
        while project.undo() is not None:
            undone += 1
        assert project.annotations() == [] and project.labels() == []
        while project.redo() is not None:
            undone -= 1
        assert undone == 0 and len(project.annotations()) == len(layers)
