"""`login`: a person signs in to their own Microsoft 365 mailbox once, for `send` to renew from."""

from __future__ import annotations

import click

from .. import oauth
from ..errors import UtskickError, display_path
from . import Context, cli, guarded


@cli.command()
@click.pass_obj
@guarded
def login(obj: Context) -> None:
    """Sign in to your own Microsoft 365 mailbox (sending.oauth with flow: device).

    Prints a web address and a code: open the address on any computer or phone, enter the code
    and sign in as the mailbox that sends. The sign-in is kept in .utskick/msal-cache.json (only
    you can read it) and renewed by itself on every send, for SMTP and IMAP, until it is revoked
    or unused for 90 days; then run login again.
    """
    project = obj.project()
    settings = project.settings.sending.oauth
    if settings is None or settings.flow != "device":
        where = ("sending", "oauth", "flow", "") if settings else ("sending",)
        raise UtskickError(project.settings_doc.problem(
            where, "utskick login is for sending.oauth with flow: device (an app with flow: app signs in by itself)"))
    mailbox = oauth.PersonalMailbox(settings, project.state_dir / oauth.CACHE_FILE, oauth.LOGIN_SCOPES)

    def show(url: str, code: str) -> None:
        click.echo(f"Open {url} in a web browser and enter the code {code}")
        click.echo("Waiting for the sign-in (Ctrl-C to stop) …")

    who = mailbox.login(show)
    click.echo(f"signed in{f' as {who}' if who else ''}; kept in {display_path(mailbox.cache_path)}")
