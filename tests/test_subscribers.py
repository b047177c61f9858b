"""Subscriber lists from real files: every encoding and delimiter, broken rows, suppression."""

from __future__ import annotations

import codecs
from datetime import date
from pathlib import Path

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from utskick import signer
from utskick.errors import Problem, UtskickError
from utskick.project import Project, load_project
from utskick.addresses import fast_normalise, normalise
from utskick.subscribers import (
    find,
    load_list,
    load_suppressed,
    recipients,
    total,
)
from utskick.suppression import read_requests, resolve_tokens, suppress

ROWS = [
    ["E-post", "Namn", "Kommun", "Roll"],
    ["karin.ostlund@trollhattan.example", "Karin Östlund", "Trollhättan", "Kommunchef"],
    ["per.ahlen@ekeby.example", "Per Åhlén", "Ekeby", "Skolchef, tf."],
]


def write(path: Path, rows: list[list[str]], delimiter: str = ",", newline: str = "\n",
          encoding: str = "utf-8") -> Path:
    """Rows as an export would write them: fields with the delimiter or a quote get quoted."""

    def cell(value: str) -> str:
        if delimiter in value or '"' in value or "\n" in value:
            return '"' + value.replace('"', '""') + '"'
        return value

    text = "".join(delimiter.join(cell(c) for c in row) + newline for row in rows)
    path.write_bytes(text.encode(encoding))
    return path


def proj(tmp_path: Path) -> Project:
    root = Path(__file__).resolve().parent.parent
    (tmp_path / "newsletter.yaml").write_bytes((root / "newsletter.yaml").read_bytes())
    (tmp_path / "subscribers").mkdir()
    return load_project(tmp_path / "newsletter.yaml")


def messages(problems: tuple[Problem, ...] | list[Problem]) -> list[str]:
    return [str(p) for p in problems]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp1252", "utf-16"])
@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
@pytest.mark.parametrize("newline", ["\r\n", "\n"])
def test_every_encoding_delimiter_and_line_ending(tmp_path: Path, encoding: str, delimiter: str, newline: str) -> None:
    path = write(tmp_path / "lista.csv", ROWS, delimiter, newline, encoding)
    lst = load_list(path)
    assert lst.problems == ()
    assert [s.name for s in lst.subscribers] == ["Karin Östlund", "Per Åhlén"]
    assert lst.subscribers[0].attrs == {"kommun": "Trollhättan", "roll": "Kommunchef"}
    assert lst.subscribers[1].attrs["roll"] == "Skolchef, tf."
    assert lst.columns == {"email", "name", "kommun", "roll"}
    assert (lst.rows, lst.invalid) == (2, 0)


def test_header_aliases_any_case_and_attributes_lower_cased(tmp_path: Path) -> None:
    for header in ("EMAIL", "e-mail", "E-Post", "epost", "Mail"):
        path = write(tmp_path / "l.csv", [[" Förnamn ", header, "NAME"], ["Åsa", "asa@x.example", "Åsa Berg"]])
        [s] = load_list(path).subscribers
        assert (s.email, s.name, dict(s.attrs)) == ("asa@x.example", "Åsa Berg", {"förnamn": "Åsa"})
        assert s.field("förnamn") == "Åsa" and s.field("saknas") is None


def test_quoted_fields_with_delimiters_quotes_and_line_breaks(tmp_path: Path) -> None:
    path = tmp_path / "l.csv"
    path.write_text('email,namn,adress\r\n'
                    'a@x.example,"Lind, Anna","Box 1\r\n123 45 Storvik"\r\n'
                    'b@x.example,"Bo ""Nisse"" Ek",Ekeby\r\n', "utf-8")
    lst = load_list(path)
    assert lst.problems == ()
    assert [(s.name, s.attrs["adress"]) for s in lst.subscribers] == [
        ("Lind, Anna", "Box 1\r\n123 45 Storvik"), ('Bo "Nisse" Ek', "Ekeby")]


def test_broken_quote_costs_one_row_and_is_reported_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "l.csv"
    path.write_text('email;namn;kommun\n'
                    'a@x.example;"Anna Lind;Storvik\n'
                    'b@x.example;Bo Ek;Ekeby\n'
                    'c@x.example;Cecilia;Lindås\n', "utf-8")
    lst = load_list(path)
    assert [s.email for s in lst.subscribers] == ["b@x.example", "c@x.example"]
    assert (lst.rows, lst.invalid) == (3, 1)
    [problem] = lst.problems
    assert (problem.line, problem.severity) == (2, "warning")
    assert "quote" in problem.message and "line 4" in problem.message


def test_blank_lines_are_skipped_and_rows_keep_their_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "l.csv"
    path.write_text("\n\nemail,namn\n\na@x.example,Anna\n,\n   \n;;\nnot-an-address,Bo\n\n", "utf-8")
    lst = load_list(path)
    assert [s.email for s in lst.subscribers] == ["a@x.example"]
    assert (lst.rows, lst.invalid) == (3, 2)  # ';;' has no address under a comma header
    assert [p.line for p in lst.problems] == [8, 9]


def test_invalid_addresses_are_located_warnings_and_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path / "l.csv", [["email", "namn"], ["anna@@x.example", "A"], ["", "B"],
                                      ["c@x.example", "C"], ["d@localhost", "D"], ["e@x.example, f@x.example", "E"]])
    lst = load_list(path)
    assert [s.email for s in lst.subscribers] == ["c@x.example"]
    got = messages(lst.problems)
    assert got[0].startswith("l.csv:2: warning: 'anna@@x.example' is not a valid address:")
    assert got[0].endswith("; row skipped")
    assert got[1] == "l.csv:3: warning: no address; row skipped"
    assert [p.line for p in lst.problems] == [2, 3, 5, 6]


def test_too_many_fields_means_an_unquoted_delimiter_and_the_row_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "l.csv"
    path.write_text("email,namn,kommun\na@x.example,Lind, Anna,Storvik\nb@x.example,Bo\nc@x.example,C,K,,\n", "utf-8")
    lst = load_list(path)
    assert [(s.email, s.attrs["kommun"]) for s in lst.subscribers] == [("b@x.example", ""), ("c@x.example", "K")]
    [problem] = lst.problems
    assert problem.line == 2 and "4 fields but the header has 3" in problem.message and "comma" in problem.message


def test_duplicates_case_insensitive_and_international_domains_are_one_person(tmp_path: Path) -> None:
    path = write(tmp_path / "l.csv", [["email"], ["Anna@Åre.se"], ["anna@xn--re-xia.se"], ["ANNA@ÅRE.SE"],
                                      [" Bo.Ek@Ekeby.Example "], ["bo.ek@ekeby.example"]])
    lst = load_list(path)
    assert [(s.email, s.key) for s in lst.subscribers] == [
        ("Anna@åre.se", "anna@xn--re-xia.se"), ("Bo.Ek@ekeby.example", "bo.ek@ekeby.example")]
    assert [p.line for p in lst.problems] == [3, 4, 6]
    assert "also on line 2" in lst.problems[0].message


def test_windows_1252_and_mixed_encodings(tmp_path: Path) -> None:
    path = tmp_path / "l.csv"
    path.write_bytes("email;namn\r\nk@x.example;Östlund – Trollhättan\r\n".encode("cp1252"))
    assert load_list(path).subscribers[0].name == "Östlund – Trollhättan"
    path.write_bytes("email;namn\r\na@x.example;Åsa\r\n".encode() + "k@x.example;Östlund\r\n".encode("cp1252"))
    with pytest.raises(UtskickError) as e:
        load_list(path)
    assert (e.value.problems[0].file, e.value.problems[0].line) == (path, 3)
    assert "mixed encodings" in str(e.value)


def test_unusable_files_are_located_errors(tmp_path: Path) -> None:
    cases = {
        "namn,kommun\nAnna,Storvik\n": "no address column",
        "anna@x.example\nbo@x.example\n": "add a header row",
        "": "the file is empty",
        '"email,namn\na@x.example,A\n': "header row has a quote",
    }
    for text, expected in cases.items():
        path = tmp_path / "l.csv"
        path.write_text(text, "utf-8")
        with pytest.raises(UtskickError) as e:
            load_list(path)
        assert expected in str(e.value) and e.value.problems[0].file == path
    with pytest.raises(UtskickError, match="file not found"):
        load_list(tmp_path / "saknas.csv")


def test_union_of_lists_minus_suppressed_with_stats(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = proj(tmp_path)
    d = project.subscribers_dir
    write(d / "medlemmar.csv", [["email", "namn"], ["a@x.example", "A"], ["stopp@x.example", "S"],
                                ["b@x.example", "B"], ["B@X.example", "B2"], ["fel", "F"]])
    write(d / "chefer.csv", [["e-post", "namn"], ["c@x.example", "C"], ["STOPP@x.example", "S"],
                             ["a@x.example", "A2"]], delimiter=";")
    write(d / "unsubscribed.csv", [["email", "date", "reason"], ["Stopp@X.example", "2026-01-02", "bad"]])
    found = recipients(project, ["medlemmar", "chefer", "medlemmar"])
    assert [s.email for s in found.subscribers] == ["a@x.example", "b@x.example", "c@x.example"]
    assert found.subscribers[0].name == "A"  # the first list's row wins
    assert not hasattr(found.subscribers[0], "token")  # links are signed only as messages are built
    m, c = found.stats
    assert (m.rows, m.valid, m.invalid, m.duplicates, m.suppressed, m.receive) == (5, 4, 1, 1, 1, 2)
    assert (c.rows, c.valid, c.invalid, c.duplicates, c.suppressed, c.receive) == (3, 3, 0, 1, 1, 1)
    assert total(found.stats).receive == 3
    assert [p.line for p in found.problems] == [5, 6]
    # The suppression list is never a list, and a typo names the lists there are.
    with pytest.raises(UtskickError, match="suppression list"):
        recipients(project, ["unsubscribed"])
    with pytest.raises(UtskickError) as e:
        project.existing_list("medlemar")
    assert "available: chefer, medlemmar" in str(e.value)


def test_suppress_is_idempotent_atomic_and_keeps_the_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "unsubscribed.csv"
    original = "\ufeffE-post;Datum;Orsak;Övrigt\r\nstopp@x.example;2026-01-02;bad;kvar\r\n"
    path.write_bytes(original.encode("utf-8"))
    added = suppress(path, [("Stopp@X.example", "again"), ("ny@x.example", "studsar: 550 5.1.1\n user unknown; x"),
                            ("NY@x.example", "twice")], date(2026, 3, 4))
    assert added == ["ny@x.example"]
    text = path.read_bytes().decode("utf-8")
    assert text == original + 'ny@x.example;2026-03-04;"studsar: 550 5.1.1 user unknown; x";\r\n'
    assert suppress(path, [("ny@x.example", "")]) == []
    assert path.read_bytes().decode("utf-8") == text
    with pytest.raises(UtskickError, match="not a valid address"):
        suppress(path, [("ok@x.example", ""), ("trasig@", "")])
    assert path.read_bytes().decode("utf-8") == text  # nothing half-done
    assert load_suppressed(path)[0] == {"stopp@x.example", "ny@x.example"}


def test_suppress_creates_the_file_and_appends_after_a_missing_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "unsubscribed.csv"
    assert suppress(path, [("a@x.example", "r")], date(2026, 1, 1)) == ["a@x.example"]
    assert path.read_text("utf-8") == "email,date,reason\na@x.example,2026-01-01,r\n"
    path.write_text("email\na@x.example", "utf-8")
    suppress(path, [("b@x.example", "r")])
    assert path.read_text("utf-8") == "email\na@x.example\nb@x.example\n"
    assert suppress(path, [("Asa@Åre.se", "r")]) == ["Asa@åre.se"]
    assert "asa@xn--re-xia.se" in load_suppressed(path)[0]
    path.write_text('email,namn\na@x.example,"open', "utf-8")
    with pytest.raises(UtskickError, match="not closed"):
        suppress(path, [("b@x.example", "r")])
    assert path.read_text("utf-8") == 'email,namn\na@x.example,"open'
    assert load_suppressed(tmp_path / "saknas.csv") == (frozenset(), [])


def test_tokens_resolve_against_candidate_keys(tmp_path: Path) -> None:
    key = signer.load(tmp_path)
    keys = [f"p{i}@x.example" for i in range(50)]
    found, missing = resolve_tokens(key, [key.token(keys[7]), "okänd", key.token(keys[42])], iter(keys))
    assert found == {key.token(keys[7]): keys[7], key.token(keys[42]): keys[42]}
    assert missing == ["okänd"]
    assert signer.sample().token(keys[7]) != key.token(keys[7])  # build's sample links carry no real token


# A grammar around the fast path's edges: dots, dashes, case, digits, IDNA, reserved names.
_atom = st.text("abcXYZ09_+-.!#'~", min_size=0, max_size=12)
_label = st.text("abcXY09-", min_size=0, max_size=8) | st.sampled_from(["xn--re-xia", "åre", "a" * 63, "a" * 64])
_tld = st.sampled_from(["se", "SE", "example", "local", "test", "c1", "x", "com", "localhost", "a" * 63])


@st.composite
def near_addresses(draw: st.DrawFn) -> str:
    local = draw(_atom) if draw(st.booleans()) else draw(st.sampled_from(["a" * 64, "a" * 65, "å", "a b"]))
    labels = draw(st.lists(_label, min_size=0, max_size=4)) + [draw(_tld)]
    return f"{local}@{'.'.join(labels)}" + draw(st.sampled_from(["", "", "", ".", " ", "a" * 200]))


@settings(max_examples=3000, deadline=None)
@given(st.one_of(near_addresses(), st.text(max_size=80)))
@example("anna.lind@bjorkvik.example")
@example("a@b.local")
@example("a@xn--re-xia.se")
@example("a" * 64 + "@" + ("b" * 63 + ".") * 3 + "se")
def test_fast_path_agrees_with_email_validator(address: str) -> None:
    fast = fast_normalise(address)
    if fast is None:
        return
    result = validate_email(address, check_deliverability=False, allow_smtputf8=False)  # must not raise
    assert fast == (result.normalized, result.ascii_email.lower() if result.ascii_email else None)
    assert normalise(address) == fast


def test_fast_path_takes_the_common_case() -> None:
    assert fast_normalise("Anna.Lind+nyhet@Storvik.Example") == ("Anna.Lind+nyhet@storvik.example", "anna.lind+nyhet@storvik.example")
    for slow in ("anna@åre.se", "a@xn--re-xia.se", "a@b.local", "a..b@x.se", "a@x.c1"):
        assert fast_normalise(slow) is None
    with pytest.raises(ValueError):
        normalise("a..b@x.se")
    assert normalise("a@xn--re-xia.se") == ("a@åre.se", "a@xn--re-xia.se")


_csv_text = st.lists(
    st.lists(st.one_of(st.text(max_size=12), st.sampled_from(['"', '""', "a@x.example", "email", "\r\n", ";", "\t", ","])),
             max_size=5).map(lambda cells: "".join(cells)),
    max_size=8,
).map(lambda lines: "\n".join(lines))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(
    _csv_text.map(lambda t: ("email,namn\n" + t).encode("utf-8")),
    _csv_text.map(lambda t: t.encode("utf-8")),
    st.binary(max_size=200),
    st.binary(max_size=200).map(lambda b: codecs.BOM_UTF16_LE + b),
    st.binary(max_size=200).map(lambda b: b"email;namn\r\n" + b),
))
def test_no_content_raises_anything_but_a_located_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "l.csv"
    path.write_bytes(data)
    for load in (load_list, load_suppressed, read_requests):
        try:
            load(path)
        except UtskickError as e:
            assert all(p.file == path for p in e.problems)
    try:
        suppress(path, [("ny@x.example", "r")])
    except UtskickError as e:
        assert all(p.file == path for p in e.problems)
    else:
        assert "ny@x.example" in {s for s in load_suppressed(path)[0]}


def test_fast_path_rejects_what_email_validator_rejects_for_reserved_names() -> None:
    for address in ("a@b.local", "a@b.test", "a@b.invalid"):
        with pytest.raises(EmailNotValidError):
            validate_email(address, check_deliverability=False, allow_smtputf8=False)
        assert fast_normalise(address) is None


def test_find_one_person_in_any_spelling(tmp_path: Path) -> None:
    project = proj(tmp_path)
    write(project.subscribers_dir / "a.csv", [["namn", "e-post", "kommun"], ["Åsa", "asa@ÅRE.se", "Åre"]], ";")
    person = find(project, " ASA@xn--re-xia.se ")
    assert (person.email, person.name, person.attrs["kommun"]) == ("asa@åre.se", "Åsa", "Åre")
    assert person.key == "asa@xn--re-xia.se"
    with pytest.raises(UtskickError, match="on no list"):
        find(project, "okand@x.example")
    with pytest.raises(UtskickError, match="not a valid address"):
        find(project, "okand@")


def test_non_ascii_local_part_is_an_invalid_row(tmp_path: Path) -> None:
    # Without SMTPUTF8 such an address cannot be sent to; it must not pass as valid.
    path = tmp_path / "lista.csv"
    path.write_text("email,namn\nbjörn@exempel.se,Björn\nok@exempel.se,Ok\n", "utf-8")
    lst = load_list(path)
    assert [s.email for s in lst.subscribers] == ["ok@exempel.se"]
    assert lst.problems and lst.problems[0].line == 2


def test_quote_left_open_to_the_end_costs_one_row(tmp_path: Path) -> None:
    path = tmp_path / "two.csv"
    path.write_text('email;namn\na@x.example;"Anna\nb@x.example;Bo\nc@x.example;Ce\nd@x.example;De\n', "utf-8")
    lst = load_list(path)
    assert [s.email for s in lst.subscribers] == ["b@x.example", "c@x.example", "d@x.example"]
    assert [(p.line, "quote" in p.message) for p in lst.problems] == [(2, True)]


def test_quoted_line_break_at_the_end_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "ok.csv"
    path.write_text('email,namn\na@x.example,"Anna\nAndersson"\n', "utf-8")
    lst = load_list(path)
    assert [(s.email, s.name) for s in lst.subscribers] == [("a@x.example", "Anna\nAndersson")]
    assert not lst.problems


def test_concurrent_suppress_loses_nobody(tmp_path: Path) -> None:
    import multiprocessing

    path = tmp_path / "unsubscribed.csv"
    ctx = multiprocessing.get_context("spawn")
    jobs = [ctx.Process(target=_suppress_many, args=(path, n)) for n in range(6)]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(60)
        assert job.exitcode == 0
    assert len(load_suppressed(path)[0]) == 6 * 8


def _suppress_many(path: Path, n: int) -> None:
    for i in range(8):
        suppress(path, [(f"p{n}-{i}@x.example", "r")])


def test_atomic_write_keeps_a_readable_mode(tmp_path: Path) -> None:
    from utskick.files import write_atomic

    path = tmp_path / "a.html"
    write_atomic(path, "x")
    assert path.stat().st_mode & 0o044  # group/others may read, as with a plain open()
    path.chmod(0o640)
    write_atomic(path, "y")
    assert path.stat().st_mode & 0o777 == 0o640


def token_made_by(state_dir: Path) -> str:
    """In a process of its own: a token signed with the secret it found or made."""
    return signer.load(state_dir).token("x@example.se")


def test_one_secret_even_when_made_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import multiprocessing

    monkeypatch.delenv("UTSKICK_SECRET", raising=False)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        made = pool.map(token_made_by, [tmp_path / ".utskick"] * 8)
    assert len(set(made)) == 1
    assert (tmp_path / ".utskick" / "secret").stat().st_mode & 0o777 == 0o600


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["a@x.example", "b", ";", ",", '"', "\n", "\r", "\r\n", "é", " "]), max_size=40))
def test_a_list_read_once_reads_as_the_whole_file_does(pieces: list[str]) -> None:
    """Letting go of read lines (`read_once`) must never change a row, even when a broken quote
    makes the reader go back; and the lines are split as universal newlines split them."""
    import io

    from utskick.csvfile import LINE, read_table

    data = ("email;namn\n" + "".join(pieces)).encode()
    assert LINE.findall(data.decode()) == io.StringIO(data.decode(), newline="").readlines()
    whole = list(read_table(Path("lista.csv"), data))
    once = read_table(Path("lista.csv"), data)
    once.read_once()
    assert list(once) == whole
