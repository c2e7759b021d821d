"""`pip install samdesk` into an environment with current supervision and transformers
leaves both as they were and `pip check` is clean; the text extra costs what the
README says (supervision 0.6.0, transformers < 5) and is the only thing that does.

A fresh virtual environment (no system site packages) gets the newest supervision and
transformers 5 from the package registry, then pip resolves and installs samdesk from
a copy of this checkout. Torch is pinned to the CPU wheel already on disk (the
registry's default build pulls several GB of CUDA libraries); without one only the
resolver is checked. The installed `samdesk` then says in one line that `--text` needs
the extra, and segments a box with GrabCut. Needs the registry: skipped with the reason
when it cannot be reached. About three minutes on 2 cores, so marked ``install``: the
README's test command leaves it out and .ci/run runs it after the suite.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samdesk.inference.engines.packages import TEXT_EXTRA

pytestmark = pytest.mark.install

ROOT = Path(__file__).resolve().parents[2]
KEPT = ("supervision", "transformers")
OFFLINE = ("NewConnectionError", "Temporary failure in name resolution",
           "Network is unreachable", "Max retries exceeded")
WHEEL_DIRS = (Path("/opt/wheels"),)


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def run(venv: Path, *args: str, tool: str = "python", timeout: int = 900,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONNOUSERSITE": "1",
           **(env or {})}
    # run from the venv's folder: from this checkout, `python -c` would import its samdesk
    return subprocess.run([str(venv / "bin" / tool), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, check=False, cwd=venv)


def pip(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = run(venv, "-m", "pip", *args)
    if done.returncode != 0 and any(word in done.stdout + done.stderr for word in OFFLINE):
        pytest.skip("the package registry cannot be reached")
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return done


def versions(venv: Path) -> dict[str, str]:
    listed = json.loads(pip(venv, "list", "--format", "json").stdout)
    return {norm(item["name"]): item["version"] for item in listed}


def cpu_torch_wheel() -> Path | None:
    """A torch CPU wheel for this Python already on disk (PIP_FIND_LINKS or /opt/wheels)."""
    dirs = [Path(p) for p in os.environ.get("PIP_FIND_LINKS", "").split() if p]
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    for folder in [*dirs, *WHEEL_DIRS]:
        found = sorted(folder.glob(f"torch-*+cpu-{tag}-{tag}-*linux*x86_64.whl"))
        if found:
            return found[-1]
    return None


@pytest.fixture(scope="module")
def tools_env(tmp_path_factory):
    """(venv, source copy, constraints file, versions) of a fresh environment that
    holds the newest supervision and a transformers 5, as a user's might."""
    root = tmp_path_factory.mktemp("install")
    src = root / "src"
    shutil.copytree(ROOT / "samdesk", src / "samdesk",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()
    pip(venv, "install", "supervision", "transformers>=5")
    before = versions(venv)
    assert int(before["transformers"].split(".")[0]) >= 5
    constraints = root / "constraints.txt"
    wheel = cpu_torch_wheel()
    constraints.write_text(f"torch=={wheel.name.split('-')[1]}\n" if wheel else "")
    return venv, src, constraints, before, wheel


def planned(venv: Path, constraints: Path, target: str, report: Path) -> dict[str, str]:
    """What `pip install TARGET` would install: {name: version}, nothing installed."""
    pip(venv, "install", "--dry-run", "--report", str(report), "-c", str(constraints), target)
    items = json.loads(report.read_text())["install"]
    return {norm(i["metadata"]["name"]): i["metadata"]["version"] for i in items}


def test_pip_resolves_samdesk_without_touching_supervision_or_transformers(tools_env, tmp_path):
    venv, src, constraints, before, _ = tools_env
    plan = planned(venv, constraints, str(src), tmp_path / "base.json")
    assert "samdesk" in plan and "torch" in plan and "sam2" in plan
    assert not {*KEPT, "groundingdino-py"} & plan.keys(), plan


def test_the_text_extra_costs_what_the_readme_says(tools_env, tmp_path):
    venv, src, constraints, before, _ = tools_env
    plan = planned(venv, constraints, f"{src}[text]", tmp_path / "text.json")
    assert "groundingdino-py" in plan
    assert plan["supervision"] == "0.6.0" != before["supervision"]
    assert int(plan["transformers"].split(".")[0]) < 5
    assert "supervision 0.6.0 and transformers < 5" in TEXT_EXTRA
    readme = (ROOT / "README.md").read_text()
    assert "samdesk[text]" in readme and "supervision 0.6.0" in readme


def test_pip_install_keeps_them_pip_check_is_clean_and_the_base_install_works(
        tools_env, tmp_path):
    venv, src, constraints, before, wheel = tools_env
    if wheel is None:
        pytest.skip("no torch CPU wheel on disk: the registry's torch pulls GBs of CUDA "
                    "libraries; the resolver test covers the versions")
    pip(venv, "install", "-c", str(constraints), str(src))
    check = run(venv, "-m", "pip", "check")
    assert check.returncode == 0 and "No broken requirements found" in check.stdout, (
        check.stdout + check.stderr)
    after = versions(venv)
    assert {name: after[name] for name in KEPT} == {name: before[name] for name in KEPT}
    assert "groundingdino-py" not in after

    rgb = np.full((60, 80, 3), 30, np.uint8)
    rgb[20:40, 30:50] = (230, 200, 40)
    image = tmp_path / "photo.png"
    Image.fromarray(rgb).save(image)
    models = {"SAMDESK_MODELS": str(tmp_path / "models"), "SAMDESK_LOG_DIR": str(tmp_path)}
    text = run(venv, "segment", str(image), "--text", "car", "--out", str(tmp_path / "t.json"),
               tool="samdesk", env=models)
    assert text.returncode == 2
    assert text.stderr.strip().count("\n") == 0
    assert TEXT_EXTRA + "; groundingdino-py is not installed" in text.stderr
    out = tmp_path / "m.json"
    box = run(venv, "segment", str(image), "--box", "25,15,55,45", "--single",
              "--out", str(out), tool="samdesk", env=models)
    assert box.returncode == 0, box.stderr
    assert len(json.loads(out.read_text())["masks"]) == 1  # GrabCut, no extra needed
    # SAM and SAM 2 come with the base install (importing them here needs a torchvision
    # built for the CPU torch, which the registry does not have: torch's own index does)
    assert {"segment-anything", "sam2", "torchvision", "opencv-python"} <= after.keys()
    where = run(venv, "-c", "import samdesk, sys; print(samdesk.__file__)")
    assert where.stdout.strip().startswith(str(venv)), where.stdout + where.stderr
