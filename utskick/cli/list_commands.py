"""`lists` and `unsubscribe`: the subscriber lists and the suppression list."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.text import Text

from .. import subscribers as subs
from .. import suppression
from ..errors import Problem, display_path
from . import Context, cli, guarded, report


@cli.command("lists")
@click.pass_obj
@guarded
def lists_command(obj: Context) -> None:
    """Show every subscriber list: rows, valid, invalid, duplicates, suppressed, will receive.

    Each list is counted on its own; the last line is all lists together, each person once.
    Unusable rows are listed as FILE:ROW: warnings; an unreadable file is an error (exit 1).
    """
    from rich import box
    from rich.table import Table

    each, union, problems = subs.overview(obj.project())
    table = Table(box=box.SIMPLE, pad_edge=False)
    table.add_column("list")
    for heading in ("rows", "valid", "invalid", "duplicates", "suppressed", "will receive"):
        table.add_column(heading, justify="right", no_wrap=True)
    for i, s in enumerate([*each, union]):
        numbers = (s.rows, s.valid, s.invalid, s.duplicates, s.suppressed, s.receive)
        # Text, not markup: a file named [styrelse].csv must show as such.
        table.add_row(Text(s.name), *map(str, numbers), end_section=i == len(each) - 1)
    Console().print(table)
    report(problems)



@cli.command("unsubscribe")
@click.argument("items", nargs=-1, metavar="ADDRESS|TOKEN...")
@click.option("--reason", default="", help="Why, kept in the reason column (e.g. 'asked by phone').")
@click.option("--from", "source", type=click.Path(path_type=Path, dir_okay=False),
              help="Also read addresses or tokens from FILE: one a line, or a CSV export with an "
                   "email or token column.")
@click.option("--pull", "pull_from", is_flag=False, flag_value="", default=None, metavar="[URL]",
              help="Instead, fetch the one-click requests `utskick serve` recorded, from URL "
                   "(default: the origin of unsubscribe.url), add them, and have the server forget them.")
@click.pass_obj
@guarded
def unsubscribe_command(obj: Context, items: tuple[str, ...], reason: str, source: Path | None,
                        pull_from: str | None) -> None:
    """Add people to subscribers/unsubscribed.csv, by address or by the token in their link.

    Safe to run twice (nobody is added twice) and to interrupt (the file is replaced whole).
    A token that belongs to nobody on any list is an error (exit 1); the rest are still added.
    With --pull, tokens that belong to nobody are counted, not an error; a server that cannot
    be reached or refuses the secret is (exit 1).
    """
    project = obj.project()
    if pull_from is not None:
        if items or source is not None:
            raise click.UsageError("--pull takes no addresses, tokens or --from")
        from ..pull import REASON, pull

        click.echo(pull(project, pull_from or None, reason or REASON).summary())
        return
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
    where = display_path(project.suppression_path)
    click.echo(f"{where}: {len(done.added)} added, {len(done.already)} already there")
    report(problems + done.problems)
