"""The commands; the only place that prints or exits."""

from __future__ import annotations

import csv
import io
import shutil
import sys
from dataclasses import dataclass
from datetime import date as Date
from pathlib import Path
from typing import Any, Callable, NoReturn

import click
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.text import Text

from . import delivery
from . import transport as transports

from .errors import Problem, UtskickError, display_path
from .files import bundled, write_atomic
from .journal import Counts, Journal
from .load import Document, Project, load_issue, load_project
from .message import MessageTemplate
from .model import Issue
from .render import Rendered, personalise, render, slug_of
from .subscribers import SAMPLE, Subscriber
from . import subscribers as subs
from . import suppression


@dataclass
class Context:
    config: Path | None

    def project(self) -> Project:
        return load_project(self.config)


def fail(problems: list[Problem]) -> NoReturn:
    for p in problems:
        click.echo(str(p), err=True)
    errors = sum(1 for p in problems if p.is_error)
    click.echo(f"{errors} error(s), {len(problems) - errors} warning(s)", err=True)
    sys.exit(1)


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Our errors become located messages and exit 1; Ctrl-C exits 130; never a traceback."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UtskickError as e:
            fail(e.problems)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", type=click.Path(path_type=Path, dir_okay=False),
              help="Settings file (default: newsletter.yaml in the current folder). "
                   "Every relative path is relative to its folder.")
@click.version_option(package_name="utskick")
@click.pass_context
def cli(ctx: click.Context, config: Path | None) -> None:
    """utskick: write a newsletter issue in YAML, check it, preview it, build it and send it."""
    ctx.obj = Context(config)


def load_rendered(project: Project, issue: str) -> tuple[Document[Issue], Rendered]:
    doc = load_issue(project.issue_path(issue))
    return doc, render(project, doc)


@cli.command()
@click.argument("issue")
@click.option("--list", "lists", multiple=True, metavar="NAME", help="Also check this list (repeatable).")
@click.pass_obj
@guarded
def check(obj: Context, issue: str, lists: tuple[str, ...]) -> None:
    """Validate the settings and ISSUE (a path or a slug such as 2024-05) and render it.

    Prints every problem as FILE:LINE:COL: error|warning: message. Exit 0 when there are no
    errors (warnings do not fail), 1 otherwise.
    """
    project = obj.project()
    doc, rendered = load_rendered(project, issue)
    problems = list(rendered.problems)
    if lists or doc.model.lists:
        problems += subs.check_lists(project, lists or doc.model.lists, rendered.fields, required=bool(lists))
    report(problems)
    size = rendered.html_size
    click.echo(f"{display_path(doc.path)}: ok ({len(problems)} warning(s); HTML {size / 1024:.0f} KB)")


@cli.command()
@click.argument("issue")
@click.option("-o", "--output", type=click.Path(path_type=Path, file_okay=False),
              help="Folder to write to (default: build/ beside the settings).")
@click.pass_obj
@guarded
def build(obj: Context, issue: str, output: Path | None) -> None:
    """Write the email of ISSUE as .html, .txt and .eml, and .ics files when it has events.

    SLUG.ics holds every event (it is also attached to the email); SLUG-1.ics, SLUG-2.ics … hold
    one event each, in calendar order, to publish beside the web version for the
    "Lägg till i kalender" links.

    Personalised for a fictional sample subscriber: nothing of a real member is ever written here.
    """
    project = obj.project()
    doc, rendered = load_rendered(project, issue)
    for p in rendered.problems:
        click.echo(str(p), err=True)
    out = output or project.build_dir
    personal = personalise(rendered, SAMPLE)
    written = {
        f"{rendered.slug}.html": personal.html.encode(),
        f"{rendered.slug}.txt": personal.text.encode(),
        f"{rendered.slug}.eml": MessageTemplate.of(rendered).render(SAMPLE),
    }
    written.update({a.filename: a.data for a in rendered.attachments})
    written.update(rendered.web_files)
    for name, data in written.items():
        write_atomic(out / name, data)
        click.echo(f"wrote {display_path(out / name)} ({len(data) / 1024:.1f} KB)")


@cli.command()
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False), default=".")
@guarded
def init(directory: Path) -> None:
    """Create a project folder with example settings, an issue and a list in DIRECTORY."""
    target = directory / "newsletter.yaml"
    if target.exists():
        raise UtskickError(Problem("already exists; not overwriting", target))
    directory.mkdir(parents=True, exist_ok=True)
    source = bundled("utskick.example", Path(__file__).resolve().parent.parent, "newsletter.yaml")
    shutil.copyfile(source / "newsletter.yaml", target)
    # Subscriber lists are personal data (GDPR): keep them, and what send leaves behind, out of git.
    write_atomic(directory / ".gitignore", "subscribers/*.csv\nbuild/\noutbox/\n.utskick/\n")
    for sub in ("issues", "subscribers"):
        (directory / sub).mkdir(exist_ok=True)
    latest = sorted((source / "issues").glob("*.yaml"))[-1]
    shutil.copyfile(latest, directory / "issues" / latest.name)
    shutil.copytree(source / "issues" / "bilder", directory / "issues" / "bilder", dirs_exist_ok=True)
    shutil.copyfile(source / "subscribers" / "medlemmar.csv", directory / "subscribers" / "medlemmar.csv")
    click.echo(f"created {display_path(target)}; try: utskick --config {display_path(target)} build {latest.stem}")


def next_issue(previous: dict[str, Any], today: Date) -> dict[str, Any]:
    """The next issue from the latest one: its shape kept, its dated and written content cleared."""
    sections = [
        {**({"title": s["title"]} if s.get("title") else {}),
         "articles": [{"title": "Rubrik", "body": "Text."}]}
        for s in previous.get("sections") or [{}]
    ]
    issue: dict[str, Any] = {"subject": f"{previous.get('title') or previous.get('subject', 'Nyhetsbrev')}", "date": today.isoformat()}
    for key in ("title", "lists"):
        if previous.get(key):
            issue[key] = previous[key]
    issue["sections"] = sections
    if previous.get("calendar") is not None:
        cal = {k: v for k, v in previous["calendar"].items() if k in ("title", "intro", "more")}
        issue["calendar"] = {**cal, "events": []}
    return issue


def _readable_issues(project: Project) -> list[Document[Issue]]:
    """Every issue that loads: one broken draft must not stop `new` from finding the latest."""
    docs = []
    for path in project.issues_dir.glob("*.yaml"):
        try:
            docs.append(load_issue(path))
        except UtskickError:
            continue
    return docs


@cli.command()
@click.argument("slug", required=False)
@click.pass_obj
@guarded
def new(obj: Context, slug: str | None) -> None:
    """Start the next issue (default slug: this month, e.g. 2026-12) from the latest one."""
    project = obj.project()
    today = Date.today()
    slug = slug or today.strftime("%Y-%m")
    target = project.issues_dir / f"{slug}.yaml"
    if target.exists():
        raise UtskickError(Problem("already exists; not overwriting", target))
    previous: dict[str, Any] = {}
    latest = max(_readable_issues(project), key=lambda doc: (doc.model.date, doc.path.name), default=None)
    if latest is not None:
        previous = latest.model.model_dump(by_alias=True, exclude_none=True, mode="json")
    text = yaml.safe_dump(next_issue(previous, today), allow_unicode=True, sort_keys=False)
    write_atomic(target, text)
    click.echo(f"created {display_path(target)}")


@cli.command()
@click.argument("issue")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port on 127.0.0.1 (0 picks a free one).")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in the web browser.")
@click.option("--as", "address", metavar="ADDRESS",
              help="Preview the message this subscriber gets (default: a fictional sample subscriber).")
@click.pass_obj
@guarded
def preview(obj: Context, issue: str, port: int, open_browser: bool, address: str | None) -> None:
    """Serve a live preview of ISSUE that follows every save, until Ctrl-C.

    Shows the email as sent (desktop, phone and plain text), the inbox line, the size against
    Gmail's clip and the problems `check` reports; a broken save shows where the error is.
    """
    import threading
    import webbrowser

    from .preview import Preview, serving

    project = obj.project()
    path = project.issue_path(issue)
    if not path.is_file():
        raise UtskickError(Problem("file not found", path))
    subscriber = subs.find(project, address) if address else SAMPLE
    with serving(Preview(project.settings_doc.path, path, subscriber), port) as server:
        click.echo(f"Previewing {display_path(path)} at {server.url} (Ctrl-C to stop)")
        if open_browser:
            webbrowser.open(server.url)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            click.echo("stopped")


def main() -> None:
    cli(prog_name="utskick")


@cli.command("lists")
@click.pass_obj
@guarded
def lists_command(obj: Context) -> None:
    """Show every subscriber list: rows, valid, invalid, duplicates, suppressed, will receive.

    Each list is counted on its own; the last line is all lists together, each person once.
    Unusable rows are listed as FILE:ROW: warnings; an unreadable file is an error (exit 1).
    """
    from rich import box
    from rich.console import Console
    from rich.table import Table

    each, union, problems = subs.overview(obj.project())
    table = Table(box=box.SIMPLE, pad_edge=False)
    table.add_column("list")
    for heading in ("rows", "valid", "invalid", "duplicates", "suppressed", "will receive"):
        table.add_column(heading, justify="right", no_wrap=True)
    for i, s in enumerate([*each, union]):
        numbers = (s.rows, s.valid, s.invalid, s.duplicates, s.suppressed, s.receive)
        table.add_row(s.name, *map(str, numbers), end_section=i == len(each) - 1)
    Console().print(table)
    report(problems)


def report(problems: list[Problem]) -> None:
    """Warnings are printed and pass; any error fails the command with a count."""
    if any(p.is_error for p in problems):
        fail(problems)
    for p in problems:
        click.echo(str(p), err=True)


@cli.command("unsubscribe")
@click.argument("items", nargs=-1, metavar="ADDRESS|TOKEN...")
@click.option("--reason", default="", help="Why, kept in the reason column (e.g. 'asked by phone').")
@click.option("--from", "source", type=click.Path(path_type=Path, dir_okay=False),
              help="Also read addresses or tokens from FILE: one a line, or a CSV export with an "
                   "email or token column.")
@click.pass_obj
@guarded
def unsubscribe_command(obj: Context, items: tuple[str, ...], reason: str, source: Path | None) -> None:
    """Add people to subscribers/unsubscribed.csv, by address or by the token in their link.

    Safe to run twice (nobody is added twice) and to interrupt (the file is replaced whole).
    A token that belongs to nobody on any list is an error (exit 1); the rest are still added.
    """
    project = obj.project()
    requests = [suppression.Request(i) for i in items]
    problems: list[Problem] = []
    if source is not None:
        more, problems = suppression.read_requests(source)
        requests += more
    if not requests:
        raise click.UsageError("give addresses or tokens, or --from FILE")
    done = suppression.unsubscribe(project, requests, reason)
    for address in done.added:
        click.echo(f"unsubscribed {address}")
    for address in done.already:
        click.echo(f"already unsubscribed: {address}")
    where = display_path(subs.suppression_path(project))
    click.echo(f"{where}: {len(done.added)} added, {len(done.already)} already there")
    report(problems + done.problems)


# --- send and status ------------------------------------------------------------------------------


def summary_line(counts: Counts) -> str:
    return (f"sent {counts.sent} · bounced {counts.bounced} · failed {counts.failed} · "
            f"uncertain {counts.uncertain} · remaining {counts.pending}")


class RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{task.speed or 0:.1f} msg/s", style="progress.data.speed")


def _confirm(yes: bool, question: str) -> bool:
    if yes:
        return True
    if not sys.stdin.isatty():
        raise UtskickError(Problem("no terminal to confirm on: add --yes to send without asking"))
    return click.confirm(question, default=False, err=True)


@cli.command()
@click.argument("issue")
@click.option("--list", "lists", multiple=True, metavar="NAME",
              help="Send to this list (repeatable); default: the issue's 'lists:'.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (for scripts).")
@click.option("--dry-run", is_flag=True, help="Everything but the sending: counts, problems, message size.")
@click.option("--test", "tests", multiple=True, metavar="ADDRESS",
              help="Send a '[TEST]' copy to ADDRESS only (repeatable); not recorded as the send.")
@click.option("--resend-uncertain", is_flag=True,
              help="Also send to recipients whose message may or may not have arrived in an interrupted run.")
@click.pass_obj
@guarded
def send(obj: Context, issue: str, lists: tuple[str, ...], yes: bool, dry_run: bool, tests: tuple[str, ...],
         resend_uncertain: bool) -> None:
    """Send ISSUE to its lists through UTSKICK_SMTP_URL, or to outbox/ without it.

    Re-running the same command resumes an interrupted or stopped send: nobody who was already
    sent the issue gets it again. Exit 0 when the run completed (see the summary for bounces),
    1 when it stopped on an error, 130 on Ctrl-C.
    """
    project = obj.project()
    doc, rendered = load_rendered(project, issue)
    for p in rendered.problems:
        click.echo(str(p), err=True)
    chosen = delivery.lists_for(doc.model.lists, lists, doc.path)
    report(subs.check_lists(project, chosen, rendered.fields))
    recipients = subs.recipients(project, chosen).subscribers
    slug = rendered.slug
    if tests:
        _send_tests(project, rendered, recipients, tests, yes)
        return
    template = MessageTemplate.of(rendered)
    outbox = project.outbox_dir / slug
    transport = transports.from_environment(outbox, template.sender)
    journal = Journal.open(project.state_dir, slug, transport.kind) if Journal.exists(project.state_dir) else None
    try:
        plan = delivery.survey(journal, recipients, record=False)
    finally:
        if journal is not None:
            journal.close()
    c = plan.counts
    to_send = plan.to_send(resend_uncertain or transport.idempotent)
    click.echo(f"Subject:    {rendered.issue.subject}")
    click.echo(f"Lists:      {', '.join(chosen)}")
    click.echo(f"Recipients: {plan.recipients} ({to_send} to send; already sent {c.sent}, bounced {c.bounced}, "
               f"uncertain {c.uncertain})")
    click.echo(f"Transport:  {transport.label.replace(str(outbox), display_path(outbox))}")
    if dry_run:
        if plan.first is not None:
            sample = template.render(plan.first)
            click.echo(f"Message:    {len(sample) / 1024:.1f} KB per recipient (sample: {plan.first.email})")
        click.echo("dry run: nothing was sent")
        return
    if to_send == 0:
        click.echo("nothing left to send" + (f"; {c.uncertain} uncertain (see --resend-uncertain)" if c.uncertain else ""))
        return
    if not _confirm(yes, f"Send to {to_send} recipient(s)?"):
        click.echo("not sent", err=True)
        return
    console = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("sent {task.fields[sent]} · failed {task.fields[failed]} · remaining {task.fields[left]}"),
                  RateColumn(), TimeRemainingColumn(), console=console) as bar:
        task = bar.add_task(slug, total=to_send, sent=0, failed=0, left=to_send)

        def started(s: delivery.Survey) -> None:
            bar.update(task, total=s.to_send(resend_uncertain or transport.idempotent))

        def progressed(counts: Counts, finished: int) -> None:
            bar.update(task, completed=finished, sent=counts.sent, failed=counts.failed + counts.bounced,
                       left=counts.pending + counts.failed)

        outcome = delivery.send(project, template, transport, recipients, resend_uncertain=resend_uncertain,
                                on_start=started, on_progress=progressed)
    _summary(outcome)
    sys.exit(outcome.exit_code)


def _summary(outcome: delivery.Outcome) -> None:
    click.echo(summary_line(outcome.counts))
    if outcome.suppressed:
        click.echo(f"bounced and added to subscribers/unsubscribed.csv: {', '.join(outcome.suppressed)}")
    if outcome.uncertain:
        click.echo(f"uncertain (the message was sent but the server's answer was lost): "
                   f"{', '.join(r.email for r in outcome.uncertain)}; check with them, or run again with "
                   "--resend-uncertain")
    if outcome.stopped is not None:
        e = outcome.stopped
        who = f" (at {e.recipient})" if e.recipient else ""
        what = f"the server answered {e.reply}" if e.code else e.message
        click.echo(f"error: stopped: {what}{who}; fix it, then run the same command to resume", err=True)
    if outcome.interrupted:
        click.echo("interrupted: run the same command to resume", err=True)


def _send_tests(project: Project, rendered: Rendered, recipients: list[Subscriber], tests: tuple[str, ...],
                yes: bool) -> None:
    if not recipients:
        raise UtskickError(Problem("the lists have no recipients to take a name from"))
    first = recipients[0]
    template = MessageTemplate.of(rendered, subject_prefix="[TEST] ")
    outbox = project.outbox_dir / f"{rendered.slug}-test"
    transport = transports.from_environment(outbox, template.sender)
    click.echo(f"Test of:    {rendered.issue.subject} (as {first.name or first.email})")
    click.echo(f"To:         {', '.join(tests)}")
    click.echo(f"Transport:  {transport.label.replace(str(outbox), display_path(outbox))}")
    if not _confirm(yes, "Send the test?"):
        click.echo("not sent", err=True)
        return
    for address, reply in delivery.send_tests(project, template, transport, first, tests):
        click.echo(f"{address}: {reply}")


@cli.command()
@click.argument("issue")
@click.option("--report", type=click.Path(path_type=Path, dir_okay=False),
              help="Write one CSV row per recipient: state, attempts, the server's last reply.")
@click.pass_obj
@guarded
def status(obj: Context, issue: str, report: Path | None) -> None:
    """How the sending of ISSUE stands, from the journal (also while a send is running)."""
    project = obj.project()
    slug = slug_of(project.issue_path(issue))
    kinds = Journal.transports(project.state_dir, slug)
    if not kinds:
        click.echo(f"{slug}: not sent yet")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["transport", "email", "state", "attempts", "last_reply", "updated"])
    for kind in kinds:
        with Journal.open(project.state_dir, slug, kind) as journal:
            click.echo(f"{slug} via {kind}: {summary_line(journal.counts())}")
            for row in journal.rows():
                writer.writerow([kind, row.email, row.shown_state, row.attempts, row.reply, row.updated])
    if report is not None:
        write_atomic(report, out.getvalue())
        click.echo(f"wrote {display_path(report)}")
