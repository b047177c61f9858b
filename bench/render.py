"""Render benchmark: `utskick build` as a whole process beside the bare import of its dependencies.

    python bench/render.py

Prints, in one run: (1) the wall time of importing jinja2, premailer, pydantic, markdown-it,
babel and yaml in a fresh interpreter (the floor no build can go below), (2) the wall time of
`utskick build` on the largest example issue as a fresh process, (3) ten issues rendered in one
process. Each figure is the median of several runs.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = 5
IMPORTS = "import jinja2, premailer, pydantic, markdown_it, babel.dates, yaml, click, email.message"


def wall(cmd: list[str], cwd: Path) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from utskick.load import load_issue, load_project
    from utskick.render import render

    largest = max((ROOT / "issues").glob("*.yaml"), key=lambda p: p.stat().st_size)
    imports = wall([sys.executable, "-c", IMPORTS], ROOT)
    with tempfile.TemporaryDirectory() as out:
        build = wall([sys.executable, str(ROOT / "send.py"), "build", str(largest), "-o", out], ROOT)
    project = load_project(ROOT / "newsletter.yaml")
    issues = sorted((ROOT / "issues").glob("*.yaml"))
    render(project, load_issue(largest))  # warm caches once, as a preview server would
    start = time.perf_counter()
    for i in range(10):
        render(project, load_issue(issues[i % len(issues)]))
    ten = time.perf_counter() - start
    print(f"largest example: {largest.name}")
    print(f"{'bare import of the dependencies':<44}{imports:8.3f} s")
    print(f"{'utskick build, whole process':<44}{build:8.3f} s   (target < 1 s)")
    print(f"{'  of which beyond the imports':<44}{build - imports:8.3f} s")
    print(f"{'10 issues rendered in one process':<44}{ten:8.3f} s   (target < 2 s)")


if __name__ == "__main__":
    main()
