"""Render benchmark: `utskick build` as a whole process beside the bare import of its dependencies.

    python bench/render.py

Prints, in one run: (1) the wall time of importing what a build of an unchanged issue needs
(jinja2, pydantic, markdown-it, babel, icalendar, Pillow, yaml, click) in a fresh interpreter:
the floor no such build can go below (a changed page imports premailer too), (2) the wall time of
`utskick build` on the largest example issue as a fresh process, (3) ten issues rendered in one
process, (4) `utskick build` of that issue with a 12-megapixel phone photo (EXIF orientation and
GPS) as its editorial image, cold (empty image cache) and warm. Each figure is the median of
several runs.
"""

from __future__ import annotations

import compileall
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = 5
IMPORTS = "import jinja2, pydantic, markdown_it, babel.dates, icalendar, PIL.Image, yaml, click, email.message"


def timed(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of one run; CPU time is the steadier figure on a shared machine."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return elapsed, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def wall(cmd: list[str], cwd: Path, runs: int = RUNS) -> float:
    return statistics.median(timed(cmd, cwd)[0] for _ in range(runs))


def phone_project(root: Path) -> Path:
    """A copy of the example project whose December editorial shows a 12 MP phone photo."""
    from PIL import ExifTags, Image, ImageFilter

    project = root / "proj"
    shutil.copytree(ROOT / "issues", project / "issues")
    shutil.copyfile(ROOT / "newsletter.yaml", project / "newsletter.yaml")
    # Detail a JPEG encoder has to work for, like a photo's: blurred noise over a gradient.
    size = (4000, 3000)
    detail = Image.effect_noise(size, 90).filter(ImageFilter.GaussianBlur(0.7))
    photo = Image.merge("RGB", (Image.linear_gradient("L").resize(size), detail,
                                Image.linear_gradient("L").rotate(90).resize(size)))
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    exif.get_ifd(ExifTags.IFD.GPSInfo).update({ExifTags.GPS.GPSLatitudeRef: "N", ExifTags.GPS.GPSLatitude: (59.0, 19.0, 30.5)})
    photo.save(project / "issues" / "bilder" / "IMG_0001.jpg", quality=95, exif=exif)
    issue = project / "issues" / "2026-12.yaml"
    issue.write_text(issue.read_text("utf-8").replace("bilder/sjoutsikt.png", "bilder/IMG_0001.jpg"), "utf-8")
    return project


def photo_builds(root: Path) -> tuple[tuple[float, float], tuple[float, float], int]:
    """Median (wall, CPU) of `utskick build` with the phone photo, cold and warm; its size."""
    project = phone_project(root)
    cmd = [sys.executable, str(ROOT / "send.py"), "build", "2026-12", "-o", str(root / "out")]
    cold, warm = [], []
    for _ in range(RUNS):
        shutil.rmtree(project / ".utskick" / "cache", ignore_errors=True)
        cold.append(timed(cmd, project))
        warm.append(timed(cmd, project))
    size = (project / "issues" / "bilder" / "IMG_0001.jpg").stat().st_size
    return median_pair(cold), median_pair(warm), size


def median_pair(runs: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from utskick.load import load_issue
    from utskick.project import load_project
    from utskick.render import render

    largest = max((ROOT / "issues").glob("*.yaml"), key=lambda p: p.stat().st_size)
    # As pip leaves an installed package: compiled. A checkout run with PYTHONDONTWRITEBYTECODE
    # would otherwise compile every module of ours on every run and time the compiler.
    compileall.compile_dir(ROOT / "utskick", quiet=1)
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
    with tempfile.TemporaryDirectory() as root:
        cold, warm, photo = photo_builds(Path(root))
    print(f"largest example: {largest.name}")
    print(f"{'bare import of the dependencies':<44}{imports:8.3f} s")
    print(f"{'utskick build, whole process':<44}{build:8.3f} s   (target < 1 s)")
    print(f"{'  of which beyond the imports':<44}{build - imports:8.3f} s")
    print(f"{'10 issues rendered in one process':<44}{ten:8.3f} s   (target < 2 s)")
    print(f"with a 12 MP phone photo ({photo / 1024 / 1024:.1f} MB JPEG) as the editorial image:")
    print(f"{'utskick build, cold image cache':<44}{cold[0]:8.3f} s   (target < 3 s; CPU {cold[1]:.3f} s)")
    print(f"{'utskick build, warm image cache':<44}{warm[0]:8.3f} s   (target < 1 s; CPU {warm[1]:.3f} s)")


if __name__ == "__main__":
    main()
