"""Hardening (2 of 2), what comes in: formula cells, encodings, pasted links, URLs, variables, names."""

from __future__ import annotations

import codecs
import csv
import http.client
import io
import re
from contextlib import ExitStack
from pathlib import Path

import pytest
from conftest import Run, token

from utskick.errors import UtskickError
from utskick import signer
from utskick.preview import Preview, local_host, serving
from utskick.project import load_project
from utskick.subscribers import SAMPLE
from utskick.transport import parse_smtp_url

FORMULA = "=cmd|'/Ccalc'!A0@example.org"
UNSUBSCRIBED = Path("subscribers") / "unsubscribed.csv"


def _list(project: Path, *addresses: str) -> None:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["email", "namn"])
    w.writerows([a, "N"] for a in addresses)
    (project / "subscribers" / "l.csv").write_text(out.getvalue(), "utf-8")


def _cells(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8-sig"))))


def test_report_cells_that_excel_would_run_are_quoted(project: Path, run: Run, tmp_path: Path) -> None:
    _list(project, FORMULA, "+bo@ekeby.example", "kim@ekeby.example")
    assert run("send", "2026-12", "--list", "l", "--yes").exit_code == 0
    report = tmp_path / "r.csv"
    assert run("status", "2026-12", "--report", str(report)).exit_code == 0
    emails = [row[1] for row in _cells(report)[1:]]
    assert emails == ["'" + FORMULA, "'+bo@ekeby.example", "kim@ekeby.example"]
    # Fed back to unsubscribe, the report gives the real addresses.
    result = run("unsubscribe", "--from", str(report))
    assert result.exit_code == 0, result.output
    assert f"unsubscribed {FORMULA}" in result.output and "unsubscribed +bo@ekeby.example" in result.output


def test_unsubscribed_csv_quotes_formulas_and_reads_them_back(project: Path, run: Run) -> None:
    _list(project, "-anna@ekeby.example", "=eva@ekeby.example", "kim@ekeby.example")
    reason = '=HYPERLINK("https://evil.example","klicka")'
    result = run("unsubscribe", "--reason", reason, "--", "-anna@ekeby.example", "=eva@ekeby.example")
    assert result.exit_code == 0, result.output
    rows = _cells(project / UNSUBSCRIBED)
    assert [r[0] for r in rows[1:]] == ["'-anna@ekeby.example", "'=eva@ekeby.example"]
    assert all(r[2] == "'" + reason for r in rows[1:])
    again = run("unsubscribe", "--", "-anna@ekeby.example")
    assert "already unsubscribed: -anna@ekeby.example" in again.output, again.output
    assert "Recipients: 1 " in run("send", "2026-12", "--list", "l", "--dry-run").output


@pytest.mark.parametrize(("encoding", "bom"), [("cp1252", b""), ("utf-16-le", codecs.BOM_UTF16_LE),
                                               ("utf-16-be", codecs.BOM_UTF16_BE), ("utf-8-sig", b"")])
def test_unsubscribe_keeps_the_files_encoding(project: Path, run: Run, encoding: str, bom: bytes) -> None:
    path = project / UNSUBSCRIBED
    path.write_bytes(bom + "email\tdatum\torsak\r\nasa@ekeby.example\t2026-01-01\tflyttat till Växjö\r\n".encode(encoding))
    assert run("unsubscribe", "--reason", "bytt tjänst på Öland", "kim@ekeby.example").exit_code == 0
    data = path.read_bytes()
    text = data.removeprefix(bom).decode(encoding)
    assert text == ("email\tdatum\torsak\r\nasa@ekeby.example\t2026-01-01\tflyttat till Växjö\r\n"
                    f"kim@ekeby.example\t{text.split(chr(9))[-2]}\tbytt tjänst på Öland\r\n")
    assert data.startswith(bom) and (encoding != "utf-8-sig" or data.startswith(codecs.BOM_UTF8))


def test_text_beyond_windows_1252_and_utf8_without_bom_become_utf8_with_bom(project: Path, run: Run) -> None:
    path = project / UNSUBSCRIBED
    path.write_bytes("email,date,reason\nasa@ekeby.example,2026-01-01,Växjö\n".encode("cp1252"))
    assert run("unsubscribe", "--reason", "Łódź", "kim@ekeby.example").exit_code == 0
    assert path.read_bytes().startswith(codecs.BOM_UTF8)
    assert "Växjö" in path.read_text("utf-8-sig") and "Łódź" in path.read_text("utf-8-sig")
    path.write_bytes(b"email,date,reason\n")  # plain ASCII, as the example ships
    assert run("unsubscribe", "bo@ekeby.example").exit_code == 0
    assert not path.read_bytes().startswith(codecs.BOM_UTF8)
    assert run("unsubscribe", "--reason", "på telefon", "eva@ekeby.example").exit_code == 0
    assert path.read_bytes().startswith(codecs.BOM_UTF8)


def test_a_whole_pasted_unsubscribe_link_is_its_token(project: Path, run: Run) -> None:
    link = f"https://www.sjolandet.example/avregistrera?token={token('anna.lind@bjorkvik.example')}"
    result = run("unsubscribe", link, f"<https://www.sjolandet.example/avregistrera?token={token('lars.sund@storvik.example')}>")
    assert result.exit_code == 0, result.output
    assert "unsubscribed anna.lind@bjorkvik.example" in result.output
    assert "unsubscribed lars.sund@storvik.example" in result.output


def test_a_csv_header_over_the_field_limit_is_located(project: Path, run: Run) -> None:
    (project / "subscribers" / "stor.csv").write_text("email,\"" + "x" * 140_000 + "\"\nkim@ekeby.example,1\n", "utf-8")
    for args in (("check", "2026-12", "--list", "stor"), ("lists",)):
        result = run(*args)
        assert result.exit_code == 1, result.output
        assert "subscribers/stor.csv:1: error: cannot read the header row (field larger than field limit" \
            in result.stderr, result.output


def test_smtp_url_options_without_a_value_and_port_zero_are_errors() -> None:
    for bad, says in (("smtp://127.0.0.1:25?starttls", "starttls can only be 'require'"),
                      ("smtp://127.0.0.1:25?starttls=", "starttls can only be 'require'"),
                      ("smtp://u@smtp.example.se:587?auth", "auth can only be 'xoauth2'"),
                      ("smtp://smtp.example.se:0", "the port must be a number from 1 to 65535"),
                      ("smtps://smtp.example.se:0", "the port must be a number from 1 to 65535")):
        with pytest.raises(UtskickError) as e:
            parse_smtp_url(bad)
        assert says in str(e.value), bad
    assert parse_smtp_url("smtp://127.0.0.1:25?starttls=require").starttls


def test_an_empty_or_blank_variable_means_unset(project: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    for value in ("", " "):
        monkeypatch.setenv("UTSKICK_SMTP_URL", value)
        monkeypatch.setenv("UTSKICK_SECRET", value)
        monkeypatch.setenv("UTSKICK_SMTP_CAFILE", value)
        result = run("send", "2026-12", "--yes")
        assert result.exit_code == 0, result.output
        assert "OUTBOX" in result.output
        assert (project / ".utskick" / "secret").is_file()  # made, as without UTSKICK_SECRET
        checked = run("check", "2026-12")
        assert checked.exit_code == 0 and "the secret lives on this computer only" in checked.stderr, checked.output


def test_lists_shows_file_names_with_brackets(project: Path, run: Run) -> None:
    (project / "subscribers" / "[styrelse].csv").write_text("email\nkim@ekeby.example\n", "utf-8")
    result = run("lists")
    assert result.exit_code == 0, result.output
    assert "[styrelse]" in result.output


@pytest.mark.parametrize("name", ["...yaml", "nr 12.yaml", "a#b.yaml", "a?b.yaml", "nul.yaml", "-x.yaml", "åre.yaml"])
def test_an_issue_file_name_that_cannot_be_a_slug_is_located(project: Path, run: Run, name: str) -> None:
    good = (project / "issues" / "2026-12.yaml").read_text("utf-8")
    path = project / "issues" / name
    path.write_text(good, "utf-8")
    for args in (("check", str(path)), ("build", str(path)), ("send", str(path), "--yes"), ("status", str(path))):
        result = run(*args)
        assert result.exit_code == 1, (args, result.output)
        assert f"issues/{name}: error: the file name " in result.stderr, (args, result.output)
    assert not (project / "outbox").exists() and not (project / "build").exists()
    result = run("new", "--", name.removesuffix(".yaml"))
    assert result.exit_code == 1 and "error: the file name" in result.stderr, result.output


def test_the_preview_host_check_takes_a_host_without_port_on_port_80() -> None:
    assert local_host("127.0.0.1", 80) and local_host("localhost", 80) and local_host("127.0.0.1:80", 80)
    assert local_host("localhost:8000", 8000) and not local_host("localhost", 8000)
    assert not local_host("evil.example", 80) and not local_host(None, 80) and not local_host("127.0.0.1:8000", 80)


def test_preview_on_port_80_answers_the_browser(project: Path) -> None:
    preview = Preview(load_project(project / "newsletter.yaml"), project / "issues" / "2026-12.yaml", SAMPLE, signer.sample())
    with ExitStack() as stack:
        try:
            stack.enter_context(serving(preview, 80))
        except UtskickError:
            pytest.skip("port 80 cannot be bound here")
        for host, status in (("127.0.0.1", 200), ("localhost", 200), ("evil.example", 403)):
            connection = http.client.HTTPConnection("127.0.0.1", 80, timeout=10)
            connection.request("GET", "/", headers={"Host": host})
            assert connection.getresponse().status == status, host
            connection.close()


def test_an_unsubscribe_url_without_its_token_is_located(project: Path, run: Run) -> None:
    settings = project / "newsletter.yaml"
    settings.write_text(settings.read_text("utf-8").replace("avregistrera?token={token}", "avregistrera"), "utf-8")
    result = run("check", "2026-12")
    assert result.exit_code == 1
    assert re.search(r"newsletter.yaml:\d+:\d+: error: unsubscribe.url: .*\{token\}", result.stderr), result.stderr
