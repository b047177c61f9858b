"""The preview server over plain HTTP, its file watching and `utskick preview` itself."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from markupsafe import escape
from conftest import Run
from preview_support import ISSUE, SUBJECT, edit, previewing, until

from utskick.files import write_atomic
from utskick.project import load_project
from utskick.preview import View
from utskick.subscribers import SAMPLE
from utskick.subscribers import find as find_subscriber
from utskick import signer

WAIT = 10.0


def get(url: str) -> tuple[str, dict[str, str], bytes]:
    with urllib.request.urlopen(url, timeout=WAIT) as response:
        return response.headers.get_content_type(), dict(response.headers), response.read()


def test_page_and_email_over_http(project: Path) -> None:
    with previewing(project) as (_, server):
        assert server.url.startswith("http://127.0.0.1:")
        kind, _, body = get(server.url)
        page = body.decode()
        assert kind == "text/html"
        assert SUBJECT in page
        assert "Förbundsdirektören ser tillbaka på året" in page  # the preheader
        assert "Anna Exempel" in page
        assert '<iframe id="frame"' in page and 'sandbox="allow-same-origin' in page

        kind, headers, body = get(server.url + "email.html")
        email = body.decode()
        assert kind == "text/html"
        assert "script-src 'none'" in headers["Content-Security-Policy"]
        assert "<script" not in email.lower()
        assert "Ett år av gemensamma steg" in email
        assert f"token={signer.sample().token(SAMPLE.key)}" in email  # personalised through personalise()
        cids = re.findall(r'src="/cid/([^"]+)"', email)
        assert cids and "cid:" not in email
        kind, _, image = get(server.url + "cid/" + cids[0])
        assert kind == "image/png" and image.startswith(b"\x89PNG")

        with pytest.raises(urllib.error.HTTPError) as missing:
            get(server.url + "cid/nothing@utskick")
        assert missing.value.code == 404

        # DNS rebinding: another host name pointing at 127.0.0.1 must not read the preview.
        foreign = urllib.request.Request(server.url + "email.html", headers={"Host": "evil.example"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(foreign, timeout=WAIT)
        assert refused.value.code == 403


def test_server_listens_on_loopback_only_and_stops(project: Path) -> None:
    with previewing(project) as (_, server):
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        # Keep an event stream open: shutting down must end it rather than hang.
        stream = urllib.request.urlopen(server.url + "events", timeout=WAIT)
        assert stream.readline() == b"data: 1\n"
    assert not any(t.name.startswith("preview-") for t in threading.enumerate())
    with pytest.raises(urllib.error.URLError):
        get(f"http://127.0.0.1:{port}/")
    stream.close()


def html(view: View) -> str:
    return view.email.html if view.email else ""


def test_broken_yaml_shows_located_error_then_recovers(project: Path, run: Run) -> None:
    issue = project / "issues" / f"{ISSUE}.yaml"
    with previewing(project) as (preview, server):
        edit(issue, "date: 2026-12-16", "date: 2026-12-16\n  oops: [")
        checked = run("check", ISSUE)
        located = checked.output.splitlines()[0]
        assert re.match(r"issues/2026-12\.yaml:\d+:\d+: error: YAML syntax", located), checked.output
        view = until(preview, lambda v: [str(p) for p in v.problems] == [located])
        assert view.failed
        page = get(server.url)[2].decode()
        assert located in page
        assert "last version that rendered" in page
        assert "Ett år av gemensamma steg" in get(server.url + "email.html")[2].decode()

        edit(issue, "date: 2026-12-16\n  oops: [", "date: 2026-12-16")
        edit(issue, "Ett år av gemensamma steg", "Ett år av nya steg")
        view = until(preview, lambda v: "Ett år av nya steg" in html(v))
        assert not view.failed and not view.problems
        assert located not in get(server.url)[2].decode()


def test_settings_template_and_image_saves_refresh(project: Path) -> None:
    with previewing(project) as (preview, _):
        edit(project / "newsletter.yaml", "tagline: Sju kommuner i samverkan", "tagline: Åtta kommuner i samverkan")
        until(preview, lambda v: "Åtta kommuner" in html(v))

        # A project template folder made after the start is watched too.
        theme = Path(__file__).resolve().parent.parent / "templates"
        (project / "templates").mkdir()
        css = (theme / "email.css").read_text("utf-8") + "\n.tagline { letter-spacing: 3px; }\n"
        write_atomic(project / "templates" / "email.css", css)
        until(preview, lambda v: "letter-spacing:3px" in html(v))

        image = project / "issues" / "bilder" / "sjoutsikt.png"
        before = preview.view.email.images if preview.view.email else None
        image.write_bytes(image.read_bytes() + b"\0")
        until(preview, lambda v: v.email is not None and v.email.images != before)


def test_as_subscriber_gets_their_token(project: Path) -> None:
    settings = load_project(project / "newsletter.yaml")
    person = find_subscriber(settings, "Maria.Oberg@lindas.example ")
    assert person.name == "Maria Öberg"
    assert person.attrs["kommun"] == "Lindås"
    expected = signer.load(settings.state_dir).token("maria.oberg@lindas.example")
    with previewing(project, person, signer.load(settings.state_dir)) as (_, server):
        assert f"token={expected}" in get(server.url + "email.html")[2].decode()
        assert "Maria Öberg" in get(server.url)[2].decode()


def test_as_unknown_address_and_missing_issue_fail_cleanly(project: Path, run: Run) -> None:
    result = run("preview", ISSUE, "--as", "nobody@example.se")
    assert result.exit_code == 1
    assert "nobody@example.se is on no list here" in result.output
    result = run("preview", "2031-01")
    assert result.exit_code == 1
    assert "file not found" in result.output


def test_command_prints_url_serves_and_stops_on_ctrl_c(project: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "utskick", "preview", ISSUE, "--port", "0"],
                            cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert url, line
        assert SUBJECT in get(url.group())[2].decode()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=WAIT)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "stopped" in out and "Traceback" not in err


def test_port_in_use_is_a_clear_error(project: Path, run: Run) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("preview", ISSUE, "--port", str(port))
    assert result.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.output


def test_warnings_are_the_ones_check_prints(project: Path, run: Run) -> None:
    issue = project / "issues" / f"{ISSUE}.yaml"
    with previewing(project) as (preview, server):
        edit(issue, "<https://www.sjolandet.example/rapporter/", "<http://www.sjolandet.example/rapporter/")
        warnings = run("check", ISSUE).output.splitlines()[:-1]
        assert len(warnings) == 1 and ": warning: " in warnings[0], warnings
        view = until(preview, lambda v: bool(v.problems))
        assert [str(p) for p in view.problems] == warnings and not view.failed
        page = get(server.url)[2].decode()
        assert "1 warning" in page and escape(warnings[0]) in page


def test_list_problems_are_the_ones_check_prints(project: Path, run: Run) -> None:
    lst = project / "subscribers" / "medlemmar.csv"
    with previewing(project) as (preview, _):
        lst.write_text(lst.read_text("utf-8") + "trasig@@adress,Trasig,Ekeby,Chef\n", "utf-8")
        lines = run("check", ISSUE).output.splitlines()[:-1]
        assert any("medlemmar.csv:6: warning:" in line for line in lines), lines
        view = until(preview, lambda v: bool(v.problems))
        assert [str(p) for p in view.problems] == lines
