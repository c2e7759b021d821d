"""Run samdesk's benchmarks: ``python bench/run.py [--quick] [--only NAME ...]``.

Each benchmark prints one JSON line per measurement with its ``name``, its
figures, the ``ratio`` against a reference measured in the same process on the
same inputs, the ``target`` ratio it must stay under, and ``met``. With
``--table FILE`` the lines are also written as a Markdown table (the one in
BENCHMARKS.md). ``--quick`` makes fewer calls and smaller sessions, for a run
of a few minutes on a 2-core laptop.

Benchmarks (modules of this folder): ``click``, ``session``, ``export``,
``folder``, ``canvas``, ``serve``, ``gpu``, ``track``, ``runtime``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import Result, print_result  # noqa: E402

BENCHMARKS = ("click", "session", "export", "folder", "canvas", "serve", "gpu", "track",
              "runtime")


def machine() -> str:
    """One line describing where the run happened."""
    import os

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{os.cpu_count()} CPU cores ({cpu}), {gpu}, torch {torch.__version__} "
            f"with {torch.get_num_threads()} threads, Python {platform.python_version()}, "
            f"{platform.system()}")


def markdown(results: list[Result], header: str) -> str:
    """The results as a Markdown table, one row per line."""
    rows = [header, "", "| benchmark | figures | ratio | target | met |",
            "|---|---|---|---|---|"]
    for result in results:
        figures = ", ".join(f"{k} {v}" for k, v in result.figures.items())
        if result.skipped:
            figures = f"skipped: {result.skipped}"
        ratio = "" if result.ratio is None else f"{result.ratio:.2f}"
        target = "" if result.target is None else f"<= {result.target}"
        met = {True: "yes", False: "**no**", None: ""}[result.met]
        rows.append(f"| {result.name} | {figures} | {ratio} | {target} | {met} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls, smaller sessions")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these")
    parser.add_argument("--table", type=Path, help="also write the results as Markdown here")
    args = parser.parse_args(argv)
    results: list[Result] = []

    def emit(result: Result) -> None:
        results.append(result)
        print_result(result)

    print(json.dumps({"name": "machine", "machine": machine(), "quick": args.quick}), flush=True)
    failed = 0
    for name in args.only or BENCHMARKS:
        start = time.perf_counter()
        try:
            importlib.import_module(f"bench.{name}").run(args.quick, emit)
        except Exception:  # noqa: BLE001 - report and go on with the next benchmark
            failed += 1
            traceback.print_exc()
            emit(Result(name, {}, None, None, skipped="failed; see the traceback above"))
        print(json.dumps({"name": f"{name}.wall_s", "seconds":
                          round(time.perf_counter() - start, 1)}), flush=True)
    if args.table:
        mode = "quick" if args.quick else "full"
        args.table.write_text(markdown(results, f"Run ({mode}) on: {machine()}"))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
