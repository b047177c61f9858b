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
from .files import write_atomic
from .journal import Counts, Journal
from .load import Document, Project, load_issue, load_project
from .message import MessageTemplate
from .model import Issue
from .render import Rendered, default_theme, personalise, render, slug_of
from .subscribers import SAMPLE

EXAMPLE_DIR = Path(__file__).resolve().parent.parent


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
    for p in problems:
        click.echo(str(p), err=True)
    if any(p.is_error for p in problems):
        fail([])
    size = rendered.html_size
    click.echo(f"{display_path(doc.path)}: ok ({len(problems)} warning(s); HTML {size / 1024:.0f} KB)")


@cli.command()
@click.argument("issue")
@click.option("-o", "--output", type=click.Path(path_type=Path, file_okay=False),
              help="Folder to write to (default: build/ beside the settings).")
@click.pass_obj
@guarded
def build(obj: Context, issue: str, output: Path | None) -> None:
    """Write the email of ISSUE as .html, .txt and .eml (and .ics when it has events).

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
    source = EXAMPLE_DIR if (EXAMPLE_DIR / "newsletter.yaml").exists() else None
    if source is None:
        raise UtskickError(Problem("the example project is not available in this installation", target))
    shutil.copyfile(source / "newsletter.yaml", target)
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
    existing = sorted(project.issues_dir.glob("*.yaml"), key=lambda p: p.stat().st_mtime)
    previous: dict[str, Any] = load_issue(existing[-1]).model.model_dump(by_alias=True, exclude_none=True, mode="json") if existing else {}
    text = yaml.safe_dump(next_issue(previous, today), allow_unicode=True, sort_keys=False)
    write_atomic(target, text)
    click.echo(f"created {display_path(target)}")


def main() -> None:
    cli(prog_name="utskick")


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
    slug = rendered.slug
    if tests:
        _send_tests(project, rendered, chosen, tests, yes)
        return
    template = MessageTemplate.of(rendered)
    outbox = project.outbox_dir / slug
    transport = transports.from_environment(outbox, template.sender)
    journal = Journal.open(project.state_dir, slug, transport.kind) if Journal.exists(project.state_dir) else None
    try:
        plan = delivery.survey(journal, delivery.recipients_for(project, chosen), record=False)
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
            sample = template.render(delivery.with_token(b"dry-run", plan.first))
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

        outcome = delivery.send(project, template, transport, chosen, resend_uncertain=resend_uncertain,
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


def _send_tests(project: Project, rendered: Rendered, chosen: tuple[str, ...], tests: tuple[str, ...],
                yes: bool) -> None:
    first = next(iter(delivery.recipients_for(project, chosen)), None)
    if first is None:
        raise UtskickError(Problem(f"the lists {', '.join(chosen)} have no recipients to take a name from"))
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
