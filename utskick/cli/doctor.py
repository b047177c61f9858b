"""`doctor`: the checks of `utskick.doctor`, one line each (imported when run: dnspython and
aiosmtplib stay out of every other command's start-up)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from ..errors import UtskickError
from . import Context, cli

if TYPE_CHECKING:
    from ..dns_checks import Check


def line(check: Check) -> str:
    fix = f"; fix: {check.fix}" if check.fix and check.status in ("FAIL", "warn", "skip") else ""
    return f"{check.status:<5} {check.name}: {check.detail}{fix}"


@cli.command()
@click.option("--dns-server", metavar="IP[:PORT]",
              help="Ask this DNS server for the From domain's records instead of the system's "
                   "(the domain's own server shows a change before it has spread).")
@click.pass_obj
def doctor(obj: Context, dns_server: str | None) -> None:
    """Check, before the first send, everything a send needs; nothing is sent.

    One line per check: the settings and the secret, UTSKICK_SMTP_URL, the connection and TLS to
    the relay (certificate verified), what it offers after EHLO (STARTTLS, AUTH, SIZE against the
    largest issue's message, PIPELINING), signing in (then QUIT), the From address against the
    signed-in mailbox, the From domain's SPF, DKIM and DMARC records, List-Unsubscribe, and for
    Microsoft 365 the Sent Items note. Each failing check says how to fix it. Exit 0 when nothing
    blocks a send (warnings and notes do not), 1 otherwise. No secret or token is printed.
    """
    from .. import dns_checks
    from ..doctor import run

    try:
        project = obj.project()
    except UtskickError as e:
        for problem in e.problems:
            click.echo(line(dns_checks.Check("settings", "FAIL", str(problem), "fix the settings file, then run doctor again")))
        sys.exit(1)
    try:
        resolver = dns_checks.resolver(dns_server)
    except ValueError:
        raise click.BadParameter("must be an IP address, optionally with :PORT", param_hint="--dns-server") from None
    checks = run(project, resolver)
    for check in checks:
        click.echo(line(check))
    failed = sum(1 for c in checks if c.blocks)
    click.echo(f"{failed} problem(s) would stop a send" if failed else "nothing stops a send")
    sys.exit(1 if failed else 0)
