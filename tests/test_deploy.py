"""deploy/: the systemd unit and the container image run `utskick serve` as a non-root user."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

DEPLOY = ROOT / "deploy"
BASE = "python:3.11-slim"


def test_the_systemd_unit_verifies_and_runs_without_root(tmp_path: Path) -> None:
    unit = (DEPLOY / "utskick-serve.service").read_text("utf-8")
    parsed = configparser.ConfigParser(strict=False, interpolation=None)
    parsed.read_string(unit)
    service = parsed["Service"]
    assert service.get("DynamicUser") == "yes" or service.get("User", "root") not in ("root", "0")
    assert " serve " in service["ExecStart"] and "--host 127.0.0.1" in service["ExecStart"]
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed: the unit's syntax was not verified")
    # verify insists the program exists: point it at this installation's utskick.
    here = tmp_path / "utskick-serve.service"
    here.write_text(unit.replace("/opt/utskick/bin/utskick", str(Path(sys.executable).with_name("utskick"))), "utf-8")
    result = subprocess.run([analyze, "verify", str(here)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_the_containerfile_runs_as_a_non_root_user() -> None:
    users = re.findall(r"(?m)^USER\s+(\S+)", (DEPLOY / "Containerfile").read_text("utf-8"))
    assert users and users[-1].split(":")[0] not in ("root", "0")


def _engine() -> str:
    for tool in ("podman", "docker"):
        path = shutil.which(tool)
        if path and subprocess.run([path, "info"], capture_output=True, timeout=30).returncode == 0:
            return path
    pytest.skip("no container engine is installed and running (podman or docker): the image was not built")


def test_the_container_image_builds_and_runs_as_non_root() -> None:
    engine = _engine()
    if subprocess.run([engine, "image", "inspect", BASE], capture_output=True, timeout=30).returncode != 0:
        pytest.skip(f"the base image {BASE} is not present locally and no image registry is reachable here")
    tag = "utskick-serve:test"
    build = subprocess.run([engine, "build", "--pull=false", "-f", str(DEPLOY / "Containerfile"), "-t", tag, str(ROOT)],
                           capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    uid = subprocess.run([engine, "run", "--rm", "--network=none", tag, "id", "-u"], capture_output=True, text=True, timeout=60)
    assert uid.returncode == 0 and uid.stdout.strip() not in ("", "0"), uid.stderr
    helped = subprocess.run([engine, "run", "--rm", "--network=none", tag, "utskick", "serve", "--help"],
                            capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "--store" in helped.stdout
