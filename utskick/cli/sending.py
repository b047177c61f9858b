"""`send` and `status`: delivery with a progress bar, and the journal's summary."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.text import Text

from .. import delivery, signer, status as standing, trial
from .. import plan as plans
from .. import subscribers as subs
from .. import transport as transports
from ..addresses import InvalidAddress, normalise
from ..credentials import Tokens
from ..errors import Problem, UtskickError, display_path
from ..csvfile import format_row
from ..files import write_atomic
from ..journal import Counts
from ..load import slug_of
from ..project import Project
from ..message import MessageTemplate
from ..oauth import SMTP, for_purpose
from ..render import Rendered
from ..subscribers import Subscriber
from . import Context, cli, guarded, load_rendered, report


def summary_line(counts: Counts, gone: int = 0) -> str:
    return (f"sent {counts.sent} · bounced {counts.bounced} · failed {counts.failed} · "
            f"uncertain {counts.uncertain} · remaining {counts.pending}"
            + (f" · bounced after sending {counts.returned}" if counts.returned else "")
            + (f" · no longer on the lists {gone}" if gone else ""))


class RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{task.speed or 0:.1f} msg/s", style="progress.data.speed")


def _confirm(yes: bool, question: str) -> bool:
    if yes:
        return True
    if not sys.stdin.isatty():
        raise UtskickError(Problem("no terminal to confirm on: add --yes to send without asking"))
    try:
        return click.confirm(question, default=False, err=True)
    except click.Abort:
        # Ctrl-C (or end of input) at the prompt: nothing was sent; exit 130 like any Ctrl-C.
        raise KeyboardInterrupt from None


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
@click.option("--no-pull", is_flag=True,
              help="With unsubscribe.pull: true, send without first pulling the one-click unsubscribes.")
@click.pass_obj
@guarded
def send(obj: Context, issue: str, lists: tuple[str, ...], yes: bool, dry_run: bool, tests: tuple[str, ...],
         resend_uncertain: bool, no_pull: bool) -> None:
    """Send ISSUE to its lists through UTSKICK_SMTP_URL, or to outbox/ without it.

    Re-running the same command resumes an interrupted or stopped send: nobody who was already
    sent the issue gets it again. Exit 0 when the run completed (see the summary for bounces),
    1 when it stopped on an error, 75 when the day's budget is reached (run it again later),
    130/143/129 on Ctrl-C/SIGTERM/SIGHUP. With unsubscribe.pull: true it first pulls
    the one-click unsubscribes from `utskick serve`, and refuses to send when it cannot.
    """
    project = obj.project()
    doc, rendered = load_rendered(project, issue)
    report(list(rendered.problems))
    chosen = plans.lists_for(doc.model.lists, lists, doc.path)
    if project.settings.unsubscribe.pull and not tests and not dry_run:
        _pull_first(project, no_pull)
    found = subs.recipients(project, chosen, rendered.fields)
    report(found.problems)
    recipients = found.subscribers
    slug = rendered.slug
    if tests:
        _send_tests(project, rendered, recipients, tests, yes, dry_run)
        return
    template = MessageTemplate.of(rendered, signer.load(project.state_dir))
    transport = transports.from_environment(project.outbox_dir / slug, template.sender, _tokens(project))
    plan = plans.prepare(project, template, transport, recipients, resend_uncertain)
    c, to_send = plan.survey.counts, plan.to_send
    click.echo(f"Subject:    {rendered.issue.subject}")
    click.echo(f"Lists:      {', '.join(chosen)}")
    click.echo(f"Recipients: {plan.survey.recipients} ({to_send} to send; already sent {c.sent}, bounced {c.bounced}, "
               f"uncertain {c.uncertain})")
    click.echo(f"Transport:  {transport.label}")
    for line in (plan.timing(), plan.over_budget()):
        if line:
            click.echo(f"Timing:     {line}")
    if dry_run:
        if plan.survey.first is not None:
            sample = template.message_for(plan.survey.first)
            click.echo(f"Message:    {len(sample) / 1024:.1f} KB per recipient (sample: {plan.survey.first.email})")
        click.echo("dry run: nothing was sent")
        return
    if to_send == 0:
        _bounced(plan.run().suppressed)
        click.echo("nothing left to send" + (f"; {c.uncertain} uncertain (see --resend-uncertain)" if c.uncertain else ""))
        return
    if not _confirm(yes, f"Send to {to_send} recipient(s)?"):
        click.echo("not sent", err=True)
        return
    console = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("sent {task.fields[sent]} · bounced {task.fields[bounced]} · failed {task.fields[failed]} · "
                             "remaining {task.fields[left]}"),
                  RateColumn(), TimeRemainingColumn(), console=console) as bar:
        task = bar.add_task(slug, total=to_send, sent=0, bounced=0, failed=0, left=to_send)

        def progressed(counts: Counts, finished: int) -> None:
            bar.update(task, completed=finished, sent=counts.sent, bounced=counts.bounced, failed=counts.failed,
                       left=counts.pending + counts.failed)

        try:
            outcome = plan.run(progressed)
        except KeyboardInterrupt:
            # A second Ctrl-C while the first finishes what is in flight: the journal still holds
            # every finished transaction, so resuming is safe.
            click.echo(RESUME, err=True)
            sys.exit(130)
    _summary(outcome)
    sys.exit(outcome.exit_code)


def _pull_first(project: Project, no_pull: bool) -> None:
    if no_pull:
        click.echo("not pulling unsubscribes (--no-pull): Gmail and Yahoo require unsubscribes to be honoured "
                   "within two days; run `utskick unsubscribe --pull` soon", err=True)
        return
    from ..pull import pull

    try:
        click.echo(f"Unsubscribes: {pull(project).summary()}")
    except UtskickError as e:
        raise UtskickError([*e.problems, Problem("not sent: the one-click unsubscribes could not be pulled; "
                                                 "fix that, or send with --no-pull")]) from None


def _tokens(project: Project) -> Tokens:
    return lambda mailbox: for_purpose(SMTP, project, mailbox)


def _bounced(addresses: list[str]) -> None:
    if addresses:
        click.echo(f"bounced and added to subscribers/unsubscribed.csv: {', '.join(addresses)}")


RESUME = "interrupted: run the same command to resume"


def _summary(outcome: delivery.Outcome) -> None:
    click.echo(summary_line(outcome.counts))
    _bounced(outcome.suppressed)
    if outcome.uncertain:
        click.echo(f"uncertain (the message was sent but the server's answer was lost): "
                   f"{', '.join(r.email for r in outcome.uncertain)}; check with them, or run again with "
                   "--resend-uncertain")
    if isinstance(outcome.stopped, delivery.BounceStreak):
        click.echo(f"error: stopped: {outcome.stopped.message}", err=True)
    elif outcome.stopped is not None:
        e = outcome.stopped
        # Only a refusal of a recipient is about that recipient; a refused sender or login is not.
        who = f" (at {e.recipient})" if e.recipient and e.stage == "rcpt" else ""
        what = f"the server answered {e.reply}" if e.code and e.stage in ("mail", "rcpt", "data") else e.message
        if isinstance(e, transports.BudgetReached):
            click.echo(f"stopped: {what}: {e.hint}; run the same command later to send the rest", err=True)
        else:
            hint = f" ({e.hint})" if e.hint else ""
            click.echo(f"error: stopped: {what}{who}{hint}; fix it, then run the same command to resume", err=True)
    if outcome.all_failed and outcome.stopped is None:
        click.echo(f"error: every recipient failed ({outcome.counts.failed}): see `utskick status --report`; "
                   "run the same command to try them again", err=True)
    if outcome.interrupted:
        click.echo(RESUME, err=True)


def _send_tests(project: Project, rendered: Rendered, recipients: list[Subscriber], tests: tuple[str, ...],
                yes: bool, dry_run: bool) -> None:
    if not recipients:
        raise UtskickError(Problem("the lists have no recipients to take a name from"))
    first = recipients[0]
    addresses, problems = [], []
    for address in tests:
        try:
            addresses.append(normalise(address.strip()))
        except InvalidAddress as e:
            problems.append(e.problem(label=f"--test {address}"))
    if problems:
        raise UtskickError(problems)
    template = MessageTemplate.of(rendered, signer.load(project.state_dir), subject_prefix="[TEST] ")
    outbox = project.outbox_dir / f"{rendered.slug}-test"
    transport = transports.from_environment(outbox, template.sender, _tokens(project))
    click.echo(f"Test of:    {rendered.issue.subject} (as {first.name or first.email})")
    click.echo(f"To:         {', '.join(tests)}")
    click.echo(f"Transport:  {transport.label}")
    if dry_run:
        click.echo(f"Message:    {len(template.message_for(first)) / 1024:.1f} KB per recipient")
        click.echo("dry run: nothing was sent")
        return
    if not _confirm(yes, "Send the test?"):
        click.echo("not sent", err=True)
        return
    for address, reply in trial.send_tests(template, transport, first, addresses):
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
    path = project.issue_path(issue)
    slug = slug_of(path)
    standings = standing.report(project, slug)
    if not standings and not path.exists():
        raise UtskickError(Problem("file not found, and nothing was sent under that name", path))
    if not standings:
        click.echo(f"{slug}: not sent yet")
    out = [format_row(["transport", "email", "state", "attempts", "last_reply", "updated"])]
    for s in standings:
        click.echo(f"{slug} via {s.kind}: {summary_line(s.counts, s.gone)}")
        out += [format_row([s.kind, r.email, r.shown_state, str(r.attempts), r.reply, r.updated]) for r in s.rows]
    if report is not None:
        write_atomic(report, "".join(out), private=True)  # addresses: personal data
        click.echo(f"wrote {display_path(report)}")
