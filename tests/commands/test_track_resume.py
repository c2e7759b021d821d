"""``kill -9`` of a ``samdesk track`` process keeps every frame it wrote, and
``samdesk track FOLDER --resume`` finishes the rest.

The killed run is a real process (``samdesk.cli.main`` with the small test model);
the test watches the store from outside and kills it once some frames are in."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from samdesk.cli import main
from samdesk.project import Project
from samdesk.tracking import load_run
from tests.commands.track_fixtures import MODEL, H, W, checkpoint, model, stored
from tests.model_factories import make_frame_folder

__all__ = ["checkpoint", "model"]  # fixtures

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]

ROOT = Path(__file__).resolve().parents[2]
FRAMES = 12
RUN = """
import sys
from pathlib import Path
from samdesk.cli import main
from samdesk.inference.engines import sam2_video
from tests.commands.track_fixtures import MODEL, small_engine_loader
from tests.model_factories import SAM21_TINY_CONFIG, registered_test_model

sam2_video.load_video_engine = small_engine_loader(Path(sys.argv[1]))
with registered_test_model("sam2", SAM21_TINY_CONFIG, MODEL):
    sys.exit(main(["track", sys.argv[2], "--frame", "0", "--points", "16,24", "--model", MODEL]))
"""


def propagated(db: Path) -> int:
    """Propagated layers in the store, read from outside the running process."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM annotations WHERE edited=0"
                                    ).fetchone()[0])
    except sqlite3.OperationalError:  # not made yet, or the schema is being written
        return 0


def test_kill_9_keeps_the_frames_written_and_resume_finishes_the_rest(tmp_path, checkpoint,
                                                                      model, capsys):
    folder = tmp_path / "frames"
    make_frame_folder(folder, FRAMES, H, W)
    with Project.open(folder) as project:
        project.set_sequence(True)
    db = folder / ".samdesk" / "project.sqlite"
    run = subprocess.Popen([sys.executable, "-c", RUN, str(checkpoint), str(folder)], cwd=ROOT,
                           env={**os.environ, "PYTHONPATH": str(ROOT)},
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while propagated(db) < 3 and run.poll() is None:
            time.sleep(0.05)
        assert run.poll() is None, "the run ended before it could be killed:\n" + \
            run.communicate()[1]
        os.kill(run.pid, signal.SIGKILL)
        run.wait(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == -signal.SIGKILL
    kept = stored(folder, 1)
    with Project.open(folder) as project:  # opens: a killed run leaves a whole store
        state = load_run(project)
        assert state is not None and state.tracks == [1] and state.model == MODEL
    assert 3 <= len(kept) < FRAMES and kept[0][1]  # the prompt's layer, then propagated ones
    assert state.visited >= 3

    code = main(["track", str(folder), "--resume"])
    out, err = capsys.readouterr()
    assert code == 0, err
    left = FRAMES - state.visited
    assert out.strip().endswith(f"track 1: {left} frames written, 1 skipped (person-made), "
                                "0 without the object")
    after = stored(folder, 1)
    assert sorted(after) == list(range(FRAMES))
    assert all(after[i] == kept[i] for i in range(state.visited))  # kept, not redone
    with Project.open(folder, read_only=True) as project:
        assert load_run(project) is None
