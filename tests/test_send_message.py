"""The per-recipient bytes: cheap to make, and safe to hand to SMTP unchanged, whatever a list holds."""

from __future__ import annotations

import email
from email import policy
from pathlib import Path

import pytest
from conftest import body
from hypothesis import example, given, settings
from hypothesis import strategies as st

from utskick import signer
from utskick.cli import load_rendered
from utskick.project import load_project
from utskick.message import MessageTemplate, one_line, personalise
from utskick.subscribers import Subscriber

# Any Unicode a CSV cell can hold (surrogates cannot be UTF-8), CR, LF and NUL included, long too.
text = st.text(st.characters(exclude_categories=["Cs"]), max_size=120) | st.text(
    st.sampled_from("aåÄ \r\n.\0\x1b\u2028é-"), min_size=500, max_size=1300)

TEMPLATE = "Hej {{ subscriber.name }}!\n{{ subscriber.kommun }}\n{{ subscriber.roll }}\n"


def check_message(raw: bytes) -> email.message.EmailMessage:
    """What every message must be on the wire: CRLF only, no line over 998 octets, none a lone
    '.', and parseable with the strict policy."""
    lines = raw.split(b"\r\n")
    assert b"\r" not in b"".join(lines) and b"\n" not in b"".join(lines)
    assert max(len(line) for line in lines) <= 998
    assert b"." not in lines and not raw.startswith(b".")
    msg = email.message_from_bytes(raw, policy=policy.strict)
    assert isinstance(msg, email.message.EmailMessage)
    assert not msg.defects
    return msg


@pytest.mark.parametrize("own_template", [False, True])
def test_any_values_give_a_safe_message_that_decodes_to_the_cleaned_values(project: Path, own_template: bool) -> None:
    if own_template:  # the README invites {{ subscriber.… }} in a project's email.txt
        (project / "templates").mkdir()
        (project / "templates" / "email.txt").write_text(TEMPLATE, "utf-8")
    _, rendered = load_rendered(load_project(), "2026-12")
    signing = signer.load(Path(".utskick"))
    template = MessageTemplate.of(rendered, signing)

    @settings(max_examples=60, deadline=None)
    @given(name=text, kommun=text, roll=text)
    @example(name="Eva\r.\r\nMAIL FROM:<x@evil.example>\r\nDATA\r\n", kommun=".", roll="\r\n.\r\n")
    @example(name="Å" * 76, kommun="x" * 1200, roll="")
    def check(name: str, kommun: str, roll: str) -> None:
        sub = Subscriber("a.b@ekeby.example", "a.b@ekeby.example", name, {"kommun": kommun, "roll": roll})
        msg = check_message(template.message_for(sub))
        expected = personalise(rendered, sub, signing)
        assert body(msg, "html").replace("\r\n", "\n") == expected.html.replace("\r\n", "\n")
        plain = body(msg, "plain").replace("\r\n", "\n")
        assert plain == expected.text.replace("\r\n", "\n")
        if own_template:
            assert plain == f"Hej {one_line(name)}!\n{one_line(kommun)}\n{one_line(roll)}\n"
        to = msg["To"].addresses[0]
        assert to.addr_spec == "a.b@ekeby.example"
        # White space between encoded words is not part of the name (RFC 2047 6.2), but Python's
        # parser keeps it: compare without white space.
        assert "".join(to.display_name.split()) == "".join(one_line(name).split())

    check()


def test_cleaning_drops_control_characters_and_turns_line_breaks_into_spaces() -> None:
    assert one_line("Anna\r\nLind\0\x1b[2J\u202e\tNo\u00a0break") == "Anna  Lind[2J No\u00a0break"
    assert one_line("Åsa Öberg") == "Åsa Öberg"
