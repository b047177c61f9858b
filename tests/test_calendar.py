"""The Kalendarium: .ics files read back by two parsers, the e-mail attachment, month grouping."""

from __future__ import annotations

import email
import re
from datetime import date, datetime, time, timedelta, timezone
from email import policy
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import icalendar
import lxml.html
import pytest
import vobject
from babel.dates import format_date, format_interval, format_skeleton

from conftest import Run
from utskick.load import load_issue
from utskick.project import load_project
from utskick.render import render

SLUG = "2027-kal"
STOCKHOLM = ZoneInfo("Europe/Stockholm")
# Out of calendar order on purpose: numbering and grouping must sort them.
ISSUE = """\
subject: Kalendarium våren 2027
date: 2026-12-16
sections:
  - articles:
      - title: Våren i Sjölandet
        body: Här är vårens möten.
calendar:
  events:
    - title: Länsdagarna
      date: 2027-03-27
      end_date: 2027-03-29
      time: "10:00-12:00"
      location: Länsresidenset, Storvik
    - title: Nätverksträff för ekonomichefer
      date: 2027-01-13
      time: "09:00-12:00"
      location: Stadshuset, Granholm
      url: https://www.sjolandet.example/kalendarium/ekonomi
      description: |
        Vi går igenom **budgetläget** inför våren; anmäl dig till
        [kansliet](mailto:kansliet@sjolandet.example).
    - title: Årsstämma
      date: 2027-05-06
    - title: Vinterkonferens
      date: 2027-01-29
      end_date: 2027-01-30
      location: Folkets hus, Björkvik
    - title: Studieresa till Åbo
      date: 2027-02-10
      end_date: 2027-02-11
      time: "07:30-18:00"
"""
TITLES = ["Nätverksträff för ekonomichefer", "Vinterkonferens", "Studieresa till Åbo", "Länsdagarna", "Årsstämma"]
WEB = "https://www.sjolandet.example/nyhetsbrev"


def cldr_rows(language: str) -> list[tuple[str, str]]:
    """The Kalendarium's (month heading, when) rows for ISSUE, in calendar order.

    Dates, intervals and weekday names are CLDR's (asked of Babel, so a new CLDR release with
    other spacing cannot break the test); what is ours is the grouping, the order, the choice of
    pattern and how a day is joined to its time (a no-break space, thin spaces round the dash).
    """
    loc = {"sv": "sv_SE", "en": "en_GB"}[language]

    def hm(x: time) -> str:
        return format_skeleton("Hm", datetime.combine(date.min, x), locale=loc)

    def days(a: date, b: date, start: time, end: time) -> str:
        first, last = (format_date(x, "EEE", locale=loc) for x in (a, b))
        return f"{format_interval(a, b, 'MMMd', locale=loc)} {first}\u00a0{hm(start)}\u2009–\u2009{last}\u00a0{hm(end)}"

    def month(m: int) -> str:
        return format_date(date(2027, m, 1), "LLLL y", locale=loc)

    return [
        (month(1), f"{format_skeleton('MMMEd', date(2027, 1, 13), locale=loc)} "
                   f"{format_interval(time(9), time(12), 'Hm', locale=loc)}"),
        (month(1), format_interval(date(2027, 1, 29), date(2027, 1, 30), "MMMd", locale=loc)),
        (month(2), days(date(2027, 2, 10), date(2027, 2, 11), time(7, 30), time(18))),
        (month(3), days(date(2027, 3, 27), date(2027, 3, 29), time(10), time(12))),
        (month(5), format_skeleton("MMMEd", date(2027, 5, 6), locale=loc)),
    ]


def write_issue(project: Path, text: str = ISSUE, slug: str = SLUG) -> Path:
    path = project / "issues" / f"{slug}.yaml"
    path.write_text(text, "utf-8")
    return path


def set_setting(project: Path, old: str, new: str) -> None:
    settings = project / "newsletter.yaml"
    text = settings.read_text("utf-8")
    assert old in text
    settings.write_text(text.replace(old, new), "utf-8")


@pytest.fixture
def built(project: Path, run: Run) -> Path:
    write_issue(project)
    result = run("build", SLUG)
    assert result.exit_code == 0, result.output
    return project / "build"


def vevents(data: bytes) -> list[icalendar.Event]:
    cal = icalendar.Calendar.from_ical(data)
    broken = [(c.name, c.errors) for c in cal.walk() if c.errors]
    assert not broken, broken
    return [e for e in cal.walk("VEVENT") if isinstance(e, icalendar.Event)]


def test_every_field_parses_with_icalendar(built: Path) -> None:
    data = (built / f"{SLUG}.ics").read_bytes()
    assert b"\r\n" in data and b"METHOD" not in data
    cal = icalendar.Calendar.from_ical(data)
    assert cal["VERSION"] == "2.0" and "utskick" in str(cal["PRODID"])
    events = vevents(data)
    assert [str(e["SUMMARY"]) for e in events] == TITLES
    first = events[0]
    assert first["LOCATION"] == "Stadshuset, Granholm"
    assert first["URL"] == "https://www.sjolandet.example/kalendarium/ekonomi"
    assert first["DESCRIPTION"] == (
        "Vi går igenom budgetläget inför våren; anmäl dig till kansliet (kansliet@sjolandet.example)."
        "\n\nhttps://www.sjolandet.example/kalendarium/ekonomi"
    )
    assert first.decoded("DTSTART") == datetime(2027, 1, 13, 9, tzinfo=STOCKHOLM)
    assert first.decoded("DTEND") == datetime(2027, 1, 13, 12, tzinfo=STOCKHOLM)
    for e in events:
        stamp = e.decoded("DTSTAMP")
        assert stamp.utcoffset() == timedelta(0)
        assert abs(datetime.now(timezone.utc) - stamp) < timedelta(minutes=5)
        assert re.fullmatch(r"[0-9a-f]{32}@sjolandet\.example", str(e["UID"]))
    assert "LOCATION" not in events[4] and "URL" not in events[4] and "DESCRIPTION" not in events[4]


def test_timed_events_carry_tzid_and_one_matching_vtimezone(built: Path) -> None:
    data = (built / f"{SLUG}.ics").read_bytes()
    cal = icalendar.Calendar.from_ical(data)
    zones = list(cal.walk("VTIMEZONE"))
    assert [str(z["TZID"]) for z in zones] == ["Europe/Stockholm"]
    timed = [e for e in cal.walk("VEVENT") if isinstance(e.decoded("DTSTART"), datetime)]
    assert [str(e["SUMMARY"]) for e in timed] == ["Nätverksträff för ekonomichefer", "Studieresa till Åbo", "Länsdagarna"]
    for e in timed:
        for prop in ("DTSTART", "DTEND"):
            assert e[prop].params["TZID"] == "Europe/Stockholm"
            moment = e.decoded(prop)
            # The VTIMEZONE itself (not only the TZID name) must give zoneinfo's offset at that moment.
            assert offset_from_vtimezone(zones[0], moment) == moment.utcoffset()


def offset_from_vtimezone(zone: icalendar.Component, moment: datetime) -> timedelta:
    """The offset the VTIMEZONE's observances put in force at `moment` (the latest onset before it)."""
    onsets = []
    for obs in zone.walk():
        if obs.name in ("STANDARD", "DAYLIGHT"):
            onset = obs.decoded("DTSTART").replace(tzinfo=timezone(obs.decoded("TZOFFSETFROM")))
            onsets.append((onset, obs.decoded("TZOFFSETTO")))
    offset: timedelta = max((o for o in onsets if o[0] <= moment), key=lambda o: o[0])[1]
    return offset


@pytest.mark.xfail(strict=True, reason="icalendar's Timezone.from_tzinfo starts DAYLIGHT at 03:00 "
                   "local, but RFC 5545 wants the onset in the old offset (02:00 CET); it only matters for "
                   "03:00-03:59 on the spring-forward Sunday. Remove this mark when icalendar fixes it.")
def test_vtimezone_onsets_are_the_real_transitions(built: Path) -> None:
    cal = icalendar.Calendar.from_ical((built / f"{SLUG}.ics").read_bytes())
    (zone,) = cal.walk("VTIMEZONE")
    for obs in zone.walk():
        if obs.name in ("STANDARD", "DAYLIGHT") and obs.decoded("TZOFFSETFROM") != obs.decoded("TZOFFSETTO"):
            onset = obs.decoded("DTSTART").replace(tzinfo=timezone(obs.decoded("TZOFFSETFROM")))
            before, after = (onset + timedelta(seconds=s) for s in (-1, 0))
            assert before.astimezone(STOCKHOLM).utcoffset() == obs.decoded("TZOFFSETFROM")
            assert after.astimezone(STOCKHOLM).utcoffset() == obs.decoded("TZOFFSETTO")


def test_vobject_reads_the_same_events(built: Path) -> None:
    cal = vobject.readOne((built / f"{SLUG}.ics").read_text("utf-8"))
    events = cal.vevent_list
    assert [e.summary.value for e in events] == TITLES
    assert events[0].location.value == "Stadshuset, Granholm"
    assert events[0].url.value == "https://www.sjolandet.example/kalendarium/ekonomi"
    assert events[0].description.value.startswith("Vi går igenom budgetläget")
    utc = [(e.dtstart.value, e.dtend.value) for e in events]
    assert utc[0] == (datetime(2027, 1, 13, 8, tzinfo=timezone.utc), datetime(2027, 1, 13, 11, tzinfo=timezone.utc))
    assert len({e.uid.value for e in events}) == 5
    assert all(e.dtstamp.value.utcoffset() == timedelta(0) for e in events)


def test_multi_day_all_day_event_is_dates_with_exclusive_end(built: Path) -> None:
    data = (built / f"{SLUG}.ics").read_bytes()
    conference = vevents(data)[1]
    assert conference["DTSTART"].params.get("VALUE") == "DATE"
    assert (conference.decoded("DTSTART"), conference.decoded("DTEND")) == (date(2027, 1, 29), date(2027, 1, 31))
    assert "TZID" not in conference["DTSTART"].params
    single = vobject.readOne(data.decode()).vevent_list[4]
    assert type(single.dtstart.value) is date and type(single.dtend.value) is date
    assert (single.dtstart.value, single.dtend.value) == (date(2027, 5, 6), date(2027, 5, 7))


def test_timed_multi_day_event_runs_from_first_start_to_last_end(built: Path) -> None:
    trip = vobject.readOne((built / f"{SLUG}.ics").read_text("utf-8")).vevent_list[2]
    assert trip.dtstart.value == datetime(2027, 2, 10, 7, 30, tzinfo=STOCKHOLM)
    assert trip.dtend.value == datetime(2027, 2, 11, 18, tzinfo=STOCKHOLM)


def test_dst_crossing_event_is_one_hour_shorter(built: Path) -> None:
    """Sat 27 March 10:00 CET to Mon 29 March 12:00 CEST: 49 hours, not 50."""
    data = (built / f"{SLUG}.ics").read_bytes()
    for start, end in (
        (e.decoded("DTSTART"), e.decoded("DTEND")) for e in vevents(data) if e["SUMMARY"] == "Länsdagarna"
    ):
        assert (start.utcoffset(), end.utcoffset()) == (timedelta(hours=1), timedelta(hours=2))
        # Same-zone subtraction in Python is wall-clock time: compare instants.
        assert end.astimezone(timezone.utc) - start.astimezone(timezone.utc) == timedelta(hours=49)
    strict = vobject.readOne(data.decode()).vevent_list[3]
    assert strict.dtstart.value.astimezone(timezone.utc) == datetime(2027, 3, 27, 9, tzinfo=timezone.utc)
    assert strict.dtend.value.astimezone(timezone.utc) == datetime(2027, 3, 29, 10, tzinfo=timezone.utc)


def uids(data: bytes) -> list[str]:
    return [str(e["UID"]) for e in vevents(data)]


def test_uids_are_stable_across_rebuilds_and_edits(project: Path, run: Run) -> None:
    path = write_issue(project)
    first = render(load_project(), load_issue(path))
    again = render(load_project(), load_issue(path))
    assert uids(first.attachments[0].data) == uids(again.attachments[0].data)
    # A corrected time or place keeps the UID, so the reader's entry is updated, not duplicated.
    write_issue(project, ISSUE.replace('"09:00-12:00"', '"10:00-12:00"').replace("Stadshuset", "Rådhuset"))
    edited = render(load_project(), load_issue(path))
    assert uids(edited.attachments[0].data) == uids(first.attachments[0].data)
    # Two events with one title on one day are still two events.
    twice = ISSUE + "    - title: Årsstämma\n      date: 2027-05-06\n      time: \"13:00\"\n"
    write_issue(project, twice)
    both = uids(render(load_project(), load_issue(path)).attachments[0].data)
    assert len(set(both)) == 6 and both[:5] == uids(first.attachments[0].data)


def test_one_ics_per_event_in_calendar_order(built: Path) -> None:
    whole = vevents((built / f"{SLUG}.ics").read_bytes())
    for n, event in enumerate(whole, 1):
        data = (built / f"{SLUG}-{n}.ics").read_bytes()
        (single,) = vevents(data)
        assert (single["UID"], single["SUMMARY"], single.decoded("DTSTART")) == (
            event["UID"], event["SUMMARY"], event.decoded("DTSTART"))
        cal = icalendar.Calendar.from_ical(data)
        assert "METHOD" not in cal
        assert bool(list(cal.walk("VTIMEZONE"))) == ("TZID" in single["DTSTART"].params)
        assert len(vobject.readOne(data.decode()).vevent_list) == 1
    assert not (built / f"{SLUG}-6.ics").exists()


def test_eml_attaches_the_ics_without_making_an_invitation(built: Path) -> None:
    msg = email.message_from_bytes((built / f"{SLUG}.eml").read_bytes(), policy=policy.default)
    assert isinstance(msg, EmailMessage)
    assert msg.get_content_type() == "multipart/mixed"
    (part,) = [p for p in msg.iter_attachments() if p.get_content_type() == "text/calendar"]
    assert part.get_content_disposition() == "attachment"
    assert part.get_filename() == f"{SLUG}.ics"
    assert part.get_param("charset") == "utf-8"
    assert part.get_param("method") is None
    assert part.get_payload(decode=True) == (built / f"{SLUG}.ics").read_bytes()
    assert msg.get_body(("html",)) is not None and msg.get_body(("plain",)) is not None


def test_no_events_no_calendar_attachment(project: Path, run: Run) -> None:
    write_issue(project, ISSUE.split("calendar:")[0])
    assert run("build", SLUG).exit_code == 0
    msg = email.message_from_bytes((project / "build" / f"{SLUG}.eml").read_bytes(), policy=policy.default)
    assert msg.get_content_type() != "multipart/mixed"
    assert not list((project / "build").glob("*.ics"))


def calendar_rows(html: str) -> tuple[list[int], list[tuple[str, str, str, str | None]]]:
    """Heading levels of the page, and (month, when, title, add-to-calendar href) per event row."""
    doc = lxml.html.fromstring(html)
    levels = [int(h.tag[1]) for h in doc.iter("h1", "h2", "h3", "h4", "h5", "h6")]
    (title,) = [h for h in doc.iter("h2") if h.text_content() == "Kalendarium" or h.text_content() == "Calendar"]
    table = title.getparent().getparent().getnext().find(".//table")
    rows, month = [], ""
    for tr in table.iter("tr"):
        heading = tr.find(".//h3")
        if heading is not None:
            month = heading.text_content()
            continue
        when, what = tr.findall("td")
        add = [a for a in what.iter("a") if "cal-add" in (a.get("class") or "")]
        rows.append((month, " ".join(when.itertext()), what[0].text_content(), add[0].get("href") if add else None))
    return levels, rows


def test_html_groups_by_month_with_links(built: Path) -> None:
    levels, rows = calendar_rows((built / f"{SLUG}.html").read_text("utf-8"))
    assert all(b <= a + 1 for a, b in zip([1] + levels, levels)), levels
    assert rows == [(m, when, title, f"{WEB}/{SLUG}-{n}.ics")
                    for n, ((m, when), title) in enumerate(zip(cldr_rows("sv"), TITLES), 1)]
    doc = lxml.html.fromstring((built / f"{SLUG}.html").read_text("utf-8"))
    link = next(a for a in doc.iter("a") if a.get("href") == f"{WEB}/{SLUG}-1.ics")
    (hidden,) = link.find_class("hidden-text")
    assert link.text_content().replace(hidden.text_content(), "") == "Lägg till i kalender"
    # Named by text inside the link (Yahoo drops aria-label), the visible text first (WCAG 2.5.3).
    assert link.text_content() == f"Lägg till i kalender: {TITLES[0]}" and link.get("aria-label") is None


def test_plain_text_groups_by_month_with_links(built: Path) -> None:
    text = (built / f"{SLUG}.txt").read_text("utf-8")
    calendar = text[text.index("KALENDARIUM\n==="):]
    months = re.findall(r"^(\S.*)\n-+$", calendar, re.M)
    assert months == ["januari 2027", "februari 2027", "mars 2027", "maj 2027"]
    (_, first), (_, second) = cldr_rows("sv")[:2]
    day, hours = first.rsplit(" ", 1)
    assert f"{day}, {hours}: Nätverksträff för ekonomichefer" in calendar
    assert f"{second}: Vinterkonferens" in calendar
    links = re.findall(r"^  Lägg till i kalender:\s+(\S+)$", calendar, re.M)
    assert links == [f"{WEB}/{SLUG}-{n}.ics" for n in range(1, 6)]
    assert max(len(line) for line in calendar.splitlines() if "://" not in line) <= 78


def build_rows(project: Path, run: Run) -> tuple[Path, list[tuple[str, str, str, str | None]]]:
    """Write the test issue, build it, and return build/ with the calendar's rows."""
    write_issue(project)
    assert run("build", SLUG).exit_code == 0
    out = project / "build"
    return out, calendar_rows((out / f"{SLUG}.html").read_text("utf-8"))[1]


def test_without_web_version_no_links_but_files(project: Path, run: Run) -> None:
    set_setting(project, "web_version: https://www.sjolandet.example/nyhetsbrev/{slug}.html\n", "")
    out, rows = build_rows(project, run)
    assert [r[3] for r in rows] == [None] * 5
    assert "Lägg till i kalender" not in (out / f"{SLUG}.txt").read_text("utf-8")
    assert sorted(p.name for p in out.glob("*.ics")) == [f"{SLUG}-{n}.ics" for n in range(1, 6)] + [f"{SLUG}.ics"]


def test_english(project: Path, run: Run) -> None:
    set_setting(project, "language: sv", "language: en")
    out, rows = build_rows(project, run)
    assert [r[:2] for r in rows] == cldr_rows("en")
    doc = lxml.html.fromstring((out / f"{SLUG}.html").read_text("utf-8"))
    assert [a.text_content() for a in doc.iter("a") if "cal-add" in (a.get("class") or "")] == [
        f"Add to calendar: {title}" for title in TITLES]
    assert "Add to calendar: " in (out / f"{SLUG}.txt").read_text("utf-8")
    assert str(icalendar.Calendar.from_ical((out / f"{SLUG}.ics").read_bytes())["PRODID"]).endswith("//EN")


@pytest.mark.parametrize(
    ("old", "new", "line", "message"),
    [
        ('"09:00-12:00"', '"12:00-09:00"', 16, "ends before it starts"),
        ("end_date: 2027-01-30", "end_date: 2027-01-28", 26, "end_date 2027-01-28 is before date 2027-01-29"),
        ('"07:30-18:00"', '"07.30-25:00"', 31, "is not a time of day"),
        ('"07:30-18:00"', '"halv åtta"', 31, "must be 'HH:MM' or 'HH:MM-HH:MM'"),
    ],
)
def test_check_locates_bad_events(project: Path, run: Run, old: str, new: str, line: int, message: str) -> None:
    assert old in ISSUE
    write_issue(project, ISSUE.replace(old, new))
    result = run("check", SLUG)
    assert result.exit_code == 1
    assert re.search(rf"issues/{SLUG}\.yaml:{line}:\d+: error: .*{re.escape(message)}", result.output), result.output
    assert not (project / "build").exists()


def test_timed_event_ending_next_day_is_fine(project: Path, run: Run) -> None:
    write_issue(project, ISSUE.replace('"07:30-18:00"', '"18:00-07:30"'))
    assert run("check", SLUG).exit_code == 0


def test_check_warns_about_past_events(project: Path, run: Run) -> None:
    write_issue(project, ISSUE.replace("date: 2026-12-16", "date: 2027-02-01"))
    result = run("check", SLUG)
    assert result.exit_code == 0, result.output
    warnings = re.findall(rf"issues/{SLUG}\.yaml:(\d+):\d+: warning: .*already over", result.output)
    assert warnings == ["15", "25"]  # the January events; the trip on 10 February is not over


def test_time_in_the_spring_forward_gap_is_a_warning(project: Path, run: Run) -> None:
    issue = project / "issues" / "2026-12.yaml"
    issue.write_text(issue.read_text("utf-8").replace(
        "    - title: Styrelsemöte\n      date: 2027-01-14\n      time: \"09:00-12:00\"",
        "    - title: Styrelsemöte\n      date: 2027-03-28\n      time: \"02:30-04:00\""), "utf-8")
    result = run("check", "2026-12")
    assert result.exit_code == 0
    assert re.search(r"2026-12.yaml:\d+:13: warning: calendar.events\[0\].time: 2027-03-28 02:30 does not exist in Europe/Stockholm",
                     result.stderr), result.stderr
