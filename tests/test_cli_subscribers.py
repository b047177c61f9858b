"""`utskick lists`, `unsubscribe` and `check --list` through the real command line."""

from __future__ import annotations

from pathlib import Path

from conftest import ROOT, Run, token


UNSUB = Path("subscribers/unsubscribed.csv")


def table_row(output: str, name: str) -> list[str]:
    line = next(line for line in output.splitlines() if line.split()[:1] == [name])
    return line.split()[1:]


def test_lists_counts_each_list_and_everyone_once(project: Path, run: Run) -> None:
    (project / "subscribers" / "extra.csv").write_bytes(
        "E-post;Namn\r\nanna.lind@bjorkvik.example;Anna\r\nfel@@x;Fel\r\nny@x.example;Ny\r\nNY@x.example;Ny\r\n".encode("cp1252"))
    (project / UNSUB).write_text("email,date,reason\nlars.sund@storvik.example,2026-01-01,\n", "utf-8")
    result = run("lists")
    assert result.exit_code == 0, result.output
    #                                              rows valid invalid duplicates suppressed receive
    assert table_row(result.stdout, "kommunchefer") == ["2", "2", "0", "0", "1", "1"]
    assert table_row(result.stdout, "medlemmar") == ["4", "4", "0", "0", "0", "4"]
    assert table_row(result.stdout, "extra") == ["4", "3", "1", "1", "0", "2"]
    assert table_row(result.stdout, "all") == ["lists", "10", "9", "1", "3", "1", "5"]
    assert "unsubscribed" not in result.stdout
    assert "subscribers/extra.csv:3: warning: 'fel@@x' is not a valid address" in result.stderr
    assert "subscribers/extra.csv:5: warning: NY@x.example is also on line 4" in result.stderr


def test_lists_reports_an_unusable_file_and_still_shows_the_rest(project: Path, run: Run) -> None:
    (project / "subscribers" / "trasig.csv").write_text("namn,kommun\nAnna,Storvik\n", "utf-8")
    result = run("lists")
    assert result.exit_code == 1
    assert "subscribers/trasig.csv:1: error: no address column" in result.stderr
    assert table_row(result.stdout, "medlemmar") == ["4", "4", "0", "0", "0", "4"]


def test_unsubscribe_addresses_idempotently(project: Path, run: Run) -> None:
    result = run("unsubscribe", "Anna.Lind@Bjorkvik.example", "ny@x.example", "--reason", "bad om det, per telefon")
    assert result.exit_code == 0, result.output
    assert "unsubscribed Anna.Lind@bjorkvik.example" in result.stdout
    lines = UNSUB.read_text("utf-8").splitlines()
    assert lines[0] == "email,date,reason"
    assert lines[1].startswith("Anna.Lind@bjorkvik.example,") and lines[1].endswith(',"bad om det, per telefon"')
    assert len(lines) == 3
    before = UNSUB.read_bytes()
    again = run("unsubscribe", "anna.lind@bjorkvik.example")
    assert again.exit_code == 0
    assert "already unsubscribed: anna.lind@bjorkvik.example" in again.stdout and "0 added, 1 already there" in again.stdout
    assert UNSUB.read_bytes() == before
    listed = run("lists")
    assert table_row(listed.stdout, "medlemmar")[4:] == ["1", "3"]


def test_unsubscribe_by_token_and_unknown_tokens_fail(project: Path, run: Run) -> None:
    good = token("maria.oberg@lindas.example")
    result = run("unsubscribe", good, "okandtoken123", "trasig@")
    assert result.exit_code == 1
    assert "unsubscribed maria.oberg@lindas.example" in result.stdout
    assert "error: argument: token 'okandtoken123' belongs to nobody" in result.stderr
    assert "error: argument: 'trasig@' is not a valid address" in result.stderr
    assert "2 error(s)" in result.stderr
    assert "maria.oberg@lindas.example" in UNSUB.read_text("utf-8")
    # Already unsubscribed: the token still resolves (through the suppression list itself).
    (project / "subscribers" / "medlemmar.csv").write_text("email\n", "utf-8")
    assert "already unsubscribed: maria.oberg@lindas.example" in run("unsubscribe", good).stdout


def test_unsubscribe_from_a_file_of_lines_or_a_csv_export(project: Path, run: Run) -> None:
    lines = project / "requests.txt"
    lines.write_text(f"# från webbformuläret\n{token('lars.sund@storvik.example')}\n\nokand\n", "utf-8")
    result = run("unsubscribe", "--from", str(lines))
    assert result.exit_code == 1
    assert "unsubscribed lars.sund@storvik.example" in result.stdout
    assert "requests.txt:4: error: token 'okand' belongs to nobody" in result.stderr
    export = project / "export.csv"
    export.write_bytes("Namn;E-post;Datum\r\nJohan;johan.nilsson@granholm.example;2026-02-01\r\nTom;;x\r\n".encode("cp1252"))
    result = run("unsubscribe", "--from", str(export), "--reason", "formulär")
    assert result.exit_code == 0, result.output
    assert "export.csv:3: warning: empty; row skipped" in result.stderr
    assert "johan.nilsson@granholm.example" in UNSUB.read_text("utf-8")
    assert run("unsubscribe").exit_code == 2


def test_check_includes_list_warnings(project: Path, run: Run) -> None:
    (project / "subscribers" / "medlemmar.csv").write_text(
        "email,namn,kommun\nanna@x.example,Anna,Storvik\nfel@,Fel,X\n", "utf-8")
    result = run("check", "2026-12")  # the issue's own `lists: [medlemmar]`
    assert result.exit_code == 0, result.output
    assert "subscribers/medlemmar.csv:3: warning: 'fel@' is not a valid address" in result.stderr
    other = run("check", "2026-12", "--list", "kommunchefer")
    assert other.exit_code == 0 and "fel@" not in other.stderr
    unknown = run("check", "2026-12", "--list", "kommunchef", "--list", "medlemmar")
    assert unknown.exit_code == 1
    assert "subscribers/kommunchef.csv: error: no list 'kommunchef' (available: kommunchefer, medlemmar)" in unknown.stderr
    # Real lists stay out of git: a list only the issue names may be missing from a checkout.
    (project / "subscribers" / "medlemmar.csv").unlink()
    missing = run("check", "2026-12")
    assert missing.exit_code == 0
    assert "subscribers/medlemmar.csv: warning: list 'medlemmar' is not in this folder" in missing.stderr


def test_check_fails_when_a_list_lacks_a_column_the_issue_uses(project: Path, run: Run) -> None:
    theme = (ROOT / "templates" / "email.txt").read_text("utf-8")
    (project / "templates").mkdir()
    (project / "templates" / "email.txt").write_text(theme + "Hälsningar till {{ subscriber.kommun }}\n", "utf-8")
    (project / "subscribers" / "utan.csv").write_text("e-post,namn\na@x.example,A\n", "utf-8")
    assert run("check", "2026-12", "--list", "medlemmar").exit_code == 0
    result = run("check", "2026-12", "--list", "medlemmar", "--list", "utan")
    assert result.exit_code == 1
    assert ("subscribers/utan.csv:1: error: the issue uses {{ subscriber.kommun }} but this list has no "
            "'kommun' column (columns: email, name)") in result.stderr


def test_send_refuses_a_list_without_a_column_the_issue_uses(project: Path, run: Run) -> None:
    theme = (ROOT / "templates" / "email.txt").read_text("utf-8")
    (project / "templates").mkdir()
    (project / "templates" / "email.txt").write_text(theme + "Hälsningar till {{ subscriber.kommun }}\n", "utf-8")
    (project / "subscribers" / "utan.csv").write_text("e-post,namn\na@x.example,A\n", "utf-8")
    result = run("send", "2026-12", "--list", "utan", "--yes")
    assert result.exit_code == 1
    assert "subscribers/utan.csv:1: error: the issue uses {{ subscriber.kommun }}" in result.stderr
    assert not (project / "outbox").exists()
