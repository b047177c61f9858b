"""`utskick serve` and `unsubscribe --pull`, over real HTTP on 127.0.0.1: a link scanner's GET
unsubscribes nobody, a one-click POST does at the next pull, and the server is no oracle."""

from __future__ import annotations

import email
import re
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from email import policy
from pathlib import Path

import pytest

from conftest import Run
from receiver_support import PATH, SECRET, WAIT, Receiver, point_at, receiving
from utskick import addresses, receiver
from utskick.signer import Signer

PETTER = "petter.akesson@ekeby.example"


@pytest.fixture
def folder(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("UTSKICK_SECRET", SECRET)
    return project


@pytest.fixture
def server(folder: Path) -> Iterator[Receiver]:
    with receiving(folder) as r:
        yield r


def token(address: str) -> str:
    return Signer(SECRET.encode()).token(addresses.normalise(address)[1])


def suppressed(folder: Path) -> str:
    return (folder / "subscribers" / "unsubscribed.csv").read_text("utf-8").lower()


def test_get_shows_one_button_and_changes_nothing(server: Receiver) -> None:
    for method in ("GET", "HEAD"):
        answer = server.http(method, f"{PATH}?token={token(PETTER)}")
        assert answer.status == 200
    page = server.http("GET", f"{PATH}?token={token(PETTER)}")
    assert '<html lang="sv">' in page.text and "Sjölandets kommunalförbund" in page.text
    assert page.text.count("<button") == 1 and "<script" not in page.text
    assert f'action="?token={token(PETTER)}"' in page.text
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    assert page.headers["referrer-policy"] == "no-referrer"
    assert server.pending() == []


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_one_click_post_records_the_token(server: Receiver, encoding: str) -> None:
    answer = server.one_click(token(PETTER), encoding)
    assert answer.status == 200 and "Du är avregistrerad" in answer.text
    assert server.pending() == [token(PETTER)]
    assert server.one_click(token(PETTER), encoding).status == 200
    assert server.pending() == [token(PETTER)]  # once


def test_a_post_without_the_one_click_body_changes_nothing(server: Receiver) -> None:
    answer = server.http("POST", f"{PATH}?token={token(PETTER)}", b"", {"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status == 200 and "<button" in answer.text
    assert server.pending() == []


def test_forged_and_malformed_tokens_get_the_same_answer(server: Receiver) -> None:
    real, invented = token(PETTER), "A" * 24
    answers = [server.one_click(t) for t in (real, invented, "short", "A" * 23 + "!", "A" * 25, "")]
    assert {(a.status, a.body) for a in answers} == {(answers[0].status, answers[0].body)}
    assert answers[0].status == 200
    assert sorted(server.pending()) == sorted([real, invented])  # the server cannot tell these apart


def test_body_rate_and_store_are_bounded(folder: Path) -> None:
    with receiving(folder, receiver.Limits(max_body=100, burst=2, per_minute=0, max_tokens=10)) as server:
        too_big = server.http("POST", f"{PATH}?token={'B' * 24}", b"List-Unsubscribe=One-Click&x=" + b"y" * 200,
                              {"Content-Type": "application/x-www-form-urlencoded"})
        assert too_big.status == 413
        first, second, third = (server.one_click(c * 24) for c in "CDE")
        assert first.body == second.body == third.body
        assert sorted(server.pending()) == ["C" * 24, "D" * 24]  # the third was over the rate
    with receiving(folder, receiver.Limits(max_tokens=3)) as server:  # the same store, holding two
        assert server.one_click("F" * 24).body == server.one_click("G" * 24).body
        assert sorted(server.pending()) == ["C" * 24, "D" * 24, "F" * 24]  # full at three


def test_the_page_is_english_when_the_settings_say_so(folder: Path) -> None:
    settings = folder / "newsletter.yaml"
    settings.write_text(settings.read_text("utf-8").replace("language: sv", "language: en"), "utf-8")
    with receiving(folder) as server:
        page = server.http("GET", f"{PATH}?token={token(PETTER)}").text
        assert '<html lang="en">' in page and "Unsubscribe me" in page
        assert "You are unsubscribed" in server.one_click(token(PETTER)).text


def test_pull_settings_need_a_url_and_pull_takes_no_tokens(folder: Path, run: Run) -> None:
    result = run("unsubscribe", "--pull", "http://127.0.0.1:9", token(PETTER))
    assert result.exit_code == 2 and "--pull takes no addresses" in result.output
    settings = folder / "newsletter.yaml"
    text = settings.read_text("utf-8")
    settings.write_text(re.sub(r"(?m)^  url: .*$", "  pull: true", text), "utf-8")
    result = run("check", "2026-12")
    assert result.exit_code == 1 and re.search(r"newsletter\.yaml:\d+:\d+: error: unsubscribe: pull: true needs a url", result.output)


def test_healthz(server: Receiver) -> None:
    answer = server.http("GET", "/healthz")
    assert answer.status == 200 and answer.text == '{"status":"ok"}'


def test_pull_suppresses_acknowledges_and_is_idempotent(folder: Path, server: Receiver, run: Run) -> None:
    server.one_click(token(PETTER))
    server.one_click("Z" * 24)  # belongs to nobody
    result = run("unsubscribe", "--pull", server.url)
    assert result.exit_code == 0, result.output
    assert "pulled 2 unsubscribe request(s)" in result.output and "1 added" in result.output
    assert "1 belonging to nobody" in result.output
    assert PETTER in suppressed(folder) and "one-click" in suppressed(folder)
    assert server.pending() == []  # acknowledged: the server forgot them
    server.one_click(token(PETTER))
    again = run("unsubscribe", "--pull", server.url)
    assert again.exit_code == 0 and "1 already unsubscribed" in again.output
    assert suppressed(folder).count(PETTER) == 1
    assert token(PETTER) not in again.output


def test_pull_with_the_wrong_secret_is_refused(folder: Path, server: Receiver, run: Run,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    server.one_click(token(PETTER))
    monkeypatch.setenv("UTSKICK_SECRET", "another-secret-of-enough-length")
    result = run("unsubscribe", "--pull", server.url)
    assert result.exit_code == 1
    assert "another secret" in result.output and "UTSKICK_SECRET" in result.output
    assert "Traceback" not in result.output and "another-secret-of-enough-length" not in result.output
    assert server.pending() == [token(PETTER)] and PETTER not in suppressed(folder)


def test_replayed_and_stale_pulls_are_refused(server: Receiver) -> None:
    server.one_click(token(PETTER))
    body, headers = server.signed("GET")
    assert server.http("GET", f"{PATH}/pull", headers=headers).status == 200
    replay = server.http("GET", f"{PATH}/pull", headers=headers)
    assert (replay.status, replay.text) == (401, '{"error":"replayed"}')
    forget = b'{"forget": ["%s"]}' % token(PETTER).encode()
    _, stale = server.signed("POST", forget, stamp=int(time.time()) - 600)
    answer = server.http("POST", f"{PATH}/pull", forget, stale)
    assert (answer.status, answer.text) == (401, '{"error":"stale"}')
    # A signature for a GET does not make a POST, nor one body another.
    _, get_headers = server.signed("GET")
    assert server.http("POST", f"{PATH}/pull", forget, get_headers).status == 401
    _, other = server.signed("POST", b'{"forget": []}')
    assert server.http("POST", f"{PATH}/pull", forget, other).text == '{"error":"signature"}'
    assert server.pending() == [token(PETTER)]


def test_pull_refuses_plain_http_beyond_loopback(folder: Path, run: Run) -> None:
    result = run("unsubscribe", "--pull", "http://unsubscribe.example")
    assert result.exit_code == 1 and "plain http only to a loopback address" in result.output
    point_at(folder, "http://www.sjolandet.example")
    result = run("unsubscribe", "--pull")
    assert result.exit_code == 1 and re.search(r"newsletter\.yaml:\d+:\d+: error: .*plain http", result.output)


def test_token_must_be_the_query_parameter(folder: Path, run: Run) -> None:
    settings = folder / "newsletter.yaml"
    settings.write_text(settings.read_text("utf-8").replace("avregistrera?token={token}", "avregistrera/{token}"), "utf-8")
    result = run("check", "2026-12")
    assert result.exit_code == 1
    assert re.search(r"newsletter\.yaml:14:\d+: error: unsubscribe\.url: .*token query parameter", result.output)


def test_list_unsubscribe_has_the_https_link_first_and_mailto_second(folder: Path, run: Run) -> None:
    assert run("build", "2026-12").exit_code == 0
    msg = email.message_from_bytes((folder / "build" / "2026-12.eml").read_bytes(), policy=policy.default)
    targets = re.findall(r"<([^>]+)>", str(msg["List-Unsubscribe"]))
    assert [t.split(":")[0] for t in targets] == ["https", "mailto"]
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_the_whole_loop(folder: Path, run: Run) -> None:
    """Send, click Gmail's Unsubscribe (the POST), and the next send skips that person."""
    with receiving(folder, pull=True) as server:
        first = run("send", "2026-10", "--yes")
        assert first.exit_code == 0, first.output
        assert "pulled 0 unsubscribe request(s)" in first.output
        eml = next((folder / "outbox" / "2026-10").glob(f"*-{PETTER}.eml"))
        msg = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
        link = re.search(r"<(http[^>]+)>", str(msg["List-Unsubscribe"]))
        assert link is not None and link[1].startswith(server.url + PATH)
        assert server.one_click(link[1].split("token=")[1]).status == 200
        server.http("GET", f"{PATH}?token={'Q' * 24}")  # a link scanner: changes nothing
        second = run("send", "2026-12", "--yes")
        assert second.exit_code == 0, second.output
        assert "pulled 1 unsubscribe request(s)" in second.output and "1 added" in second.output
    sent = [p.name for p in (folder / "outbox" / "2026-12").iterdir()]
    assert sent and not any(PETTER in name for name in sent)


def test_send_refuses_when_the_server_cannot_be_reached(folder: Path, run: Run) -> None:
    with receiving(folder, pull=True):
        pass  # settings point at a port nobody listens on any more
    result = run("send", "2026-12", "--yes")
    assert result.exit_code == 1 and "cannot reach the server" in result.output and "--no-pull" in result.output
    assert not (folder / "outbox").exists()
    anyway = run("send", "2026-12", "--yes", "--no-pull")
    assert anyway.exit_code == 0, anyway.output
    assert "Gmail and Yahoo require unsubscribes to be honoured within two days" in anyway.output
    assert (folder / "outbox" / "2026-12").is_dir()


def test_utskick_serve_needs_only_the_settings(folder: Path, tmp_path: Path) -> None:
    """The real command in a process of its own, on a port it picks, in a folder holding only
    newsletter.yaml: no lists, no issues."""
    lone = tmp_path / "server"
    lone.mkdir()
    shutil.copyfile(folder / "newsletter.yaml", lone / "newsletter.yaml")
    child = subprocess.Popen([sys.executable, "-m", "utskick", "serve", "--port", "0"], cwd=lone,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        ready, _, _ = select.select([child.stdout], [], [], WAIT)
        line = child.stdout.readline() if ready else ""
        found = re.search(r"at (http://127\.0\.0\.1:\d+)", line)
        assert found, line + (child.stderr.read() if child.poll() is not None and child.stderr else "")
        server = Receiver(found[1], lone / ".utskick" / "receiver.db")
        assert server.http("GET", "/healthz").status == 200
        assert server.one_click(token(PETTER)).status == 200
        assert server.pending() == [token(PETTER)]
    finally:
        child.terminate()
        child.wait(WAIT)
    assert sorted(p.name for p in lone.iterdir()) == [".utskick", "newsletter.yaml"]
