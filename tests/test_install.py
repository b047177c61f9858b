"""`pip install .` in a fresh venv, then the installed `utskick` from another folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, Run


@pytest.mark.parametrize("kind", ["wheel", "editable"])
def test_install_then_init_and_build_elsewhere(tmp_path: Path, kind: str) -> None:
    """Both ways the README installs: a wheel (templates and the example ship inside it) and
    `pip install -e .` (they are read from the checkout)."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    py = env_dir / "bin" / "python"
    utskick = env_dir / "bin" / "utskick"
    # The dependencies are borrowed from the test environment, after the venv's own packages (a
    # .pth line, not PYTHONPATH, which would shadow the new install's editable finder).
    deps = next(p for p in sys.path if p.endswith("site-packages"))
    site = env_dir / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    (site / "zz-test-deps.pth").write_text(deps + "\n", "utf-8")
    env = {**os.environ, "UTSKICK_SECRET": "x"}
    project = tmp_path / "elsewhere"
    # Built and installed for real, with no network needed.
    pip = [sys.executable, "-m", "pip"]
    # From a copy without build/ and friends: a stale setuptools build/lib must not hide a
    # package missing from pyproject.toml.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        "build", "dist", ".venv", ".git", "outbox", ".utskick", "test-artifacts", "*.egg-info", "__pycache__"))
    if kind == "wheel":
        subprocess.run(pip + ["wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(source)],
                       check=True, capture_output=True, text=True, timeout=300)
        target = str(next((tmp_path / "dist").glob("utskick-*.whl")))
        subprocess.run(pip + ["--python", str(py), "install", "-q", "--no-deps", target],
                       check=True, capture_output=True, text=True, timeout=300)
    else:  # pip runs the build backend in the new venv, with setuptools borrowed as above
        subprocess.run(pip + ["--python", str(py), "install", "-q", "--no-deps", "--no-build-isolation", "-e", str(source)],
                       check=True, capture_output=True, text=True, timeout=300, env=env)
    res = subprocess.run([str(utskick), "init", str(project)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "subscribers/*.csv" in (project / ".gitignore").read_text("utf-8").splitlines()
    installed = subprocess.run([str(py), "-c", "import utskick; print(utskick.__file__)"],
                               capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300).stdout
    assert str(env_dir if kind == "wheel" else source) in installed
    issue = next((project / "issues").glob("*.yaml"))
    res = subprocess.run([str(utskick), "build", issue.stem], capture_output=True, text=True, env=env, cwd=project, timeout=300)
    assert res.returncode == 0, res.stderr
    assert (project / "build" / f"{issue.stem}.eml").stat().st_size > 1000


def test_init_refuses_to_overwrite(project: Path, run: Run) -> None:
    result = run("init", ".")
    assert result.exit_code == 1
    assert "newsletter.yaml: error: already exists" in result.stderr


def test_init_into_an_impossible_folder_is_a_located_error(tmp_path: Path, run: Run) -> None:
    (tmp_path / "afile").write_text("not a folder", "utf-8")
    result = run("init", str(tmp_path / "afile" / "proj"))
    assert result.exit_code == 1
    assert "afile/proj: error: cannot create the project: " in result.stderr, result.stderr
    assert "Traceback" not in result.output


def test_new_starts_from_latest_issue(project: Path, run: Run) -> None:
    (project / "issues" / "trasig.yaml").write_text("subject: [\n", "utf-8")
    result = run("new", "2027-01")
    assert result.exit_code == 0, result.output
    data = yaml.safe_load((project / "issues" / "2027-01.yaml").read_text("utf-8"))
    assert [s.get("title") for s in data["sections"]] == [
        "Utbildning och arbetsmarknad", "Social välfärd och hälsa", "Samhällsbyggnad och miljö"]
    assert data["calendar"]["events"] == []
    assert "intro" not in data
    assert run("check", "2027-01").exit_code == 0
    assert run("new", "2027-01").exit_code == 1


@pytest.mark.parametrize("args", [["--help"], ["check", "--help"], ["build", "--help"], ["init", "--help"], ["new", "--help"]])
def test_help(run: Run, args: list[str]) -> None:
    result = run(*args)
    assert result.exit_code == 0 and "Usage:" in result.output


def test_send_py_runs_the_same_cli(project: Path) -> None:
    res = subprocess.run([sys.executable, str(ROOT / "send.py"), "check", "2026-10"], capture_output=True, text=True, cwd=project, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "ok" in res.stdout
