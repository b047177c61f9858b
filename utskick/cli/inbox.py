"""`inbox`: what came back by mail (bounce reports, unsubscribe replies), read and applied."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import click

from .. import oauth
from ..credentials import Tokens
from ..errors import display_path
from ..project import Project
from . import Context, cli, guarded, report


def _tokens(project: Project) -> Tokens:
    """UTSKICK_IMAP_TOKEN_COMMAND, else the sign-in of `sending.oauth`: one set-up serves both."""
    return lambda user: oauth.for_purpose(oauth.IMAP, project, user)


@cli.command("inbox")
@click.option("--from", "source", type=click.Path(path_type=Path),
              help="Read a folder of .eml files or an mbox file instead of the mailbox (only read, never changed).")
@click.option("--folder", metavar="NAME", help="Read this IMAP folder instead of those in UTSKICK_IMAP_URL.")
@click.option("--dry-run", is_flag=True, help="Show what would be done; change nothing, move nothing.")
@click.option("--confirm", is_flag=True,
              help="Also unsubscribe those who asked by mail without their link's token (check them first).")
@click.pass_obj
@guarded
def inbox_command(obj: Context, source: Path | None, folder: str | None, dry_run: bool, confirm: bool) -> None:
    """Read bounce reports and unsubscribe replies from the sender's mailbox and apply them.

    Reads UTSKICK_IMAP_URL (imaps://user%40domain@host/INBOX) with UTSKICK_IMAP_PASSWORD, or with
    ?auth=xoauth2 a token from UTSKICK_IMAP_TOKEN_COMMAND or the settings' sending.oauth. A report
    that an address does not exist marks it bounced in the journal and adds it to
    subscribers/unsubscribed.csv; a reply carrying the unsubscribe token unsubscribes its owner. Processed messages move to utskick/behandlat;
    everything else (a person's reply) is left exactly as it is. Safe to run again.

    Exit 0 whenever the mail was read, whatever was found; 1 on errors (sign-in, TLS, a folder).
    """
    from .. import inbox as mail
    from .. import reports, returned

    project = obj.project()
    if source is not None:
        if folder is not None:
            raise click.UsageError("--folder names an IMAP folder; with --from, give the path only")
        folders: Iterable[mail.Folder] = [mail.FileFolder(source)]
    else:
        accounts = mail.from_environment()
        mailto = project.settings.unsubscribe.mailto
        folders = mail.imap_folders(accounts, _tokens(project), readonly=dry_run,
                                    folder=folder, persons=lambda head: reports.persons(head, mailto))
    summary = returned.apply(project, folders, dry_run=dry_run, confirm=confirm)
    where = display_path(project.suppression_path)
    for line in summary.bounced:
        click.echo(f"bounced: {line}")
    for address in summary.unsubscribed:
        click.echo(f"unsubscribed: {address}")
    for line in summary.delayed:
        click.echo(f"delayed: {line}")
    if summary.soft_suppressed:
        click.echo(f"failed softly on {returned.SOFT_LIMIT} issues in a row, so added to {where}: "
                   f"{', '.join(summary.soft_suppressed)}")
    for line in summary.needs_person:
        click.echo(f"needs a person: {line}")
    for line in summary.unmatched:
        click.echo(f"unmatched (no message of ours): {line}")
    click.echo(summary.line() + (f" · applied earlier {summary.earlier}" if summary.earlier else ""))
    if dry_run:
        click.echo("dry run: nothing was changed or moved")
    report(summary.problems)
