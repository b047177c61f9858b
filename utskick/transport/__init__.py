"""Where finished messages go: an SMTP relay (`smtp`) or the outbox folder (`outbox`), one
module each behind the contract in `base`; `from_environment` picks one from the environment."""

from __future__ import annotations

from pathlib import Path

from ..credentials import Tokens, TokenWanted, signing_in
from ..environment import variable
from ..errors import Problem, UtskickError
from .base import (SMTP_TIMEOUT, Bounced, BudgetReached, Committing, Connection, Fatal, Stage, Temporary,
                   Transport, TransportError)
from .outbox import OutboxConnection, OutboxTransport, outbox_name
from .smtp import SmtpConnection, SmtpSettings, SmtpTransport, classify, parse_smtp_url, trusting

__all__ = ["SMTP_TIMEOUT", "Bounced", "BudgetReached", "Committing", "Connection", "Fatal", "OutboxConnection",
           "OutboxTransport", "SmtpConnection", "SmtpSettings", "SmtpTransport", "Stage", "Temporary", "Transport",
           "TransportError", "classify", "from_environment", "outbox_name", "parse_smtp_url", "trusting"]


def from_environment(outbox: Path, sender: str, tokens: Tokens | None = None) -> Transport:
    """UTSKICK_SMTP_URL (+ UTSKICK_SMTP_PASSWORD, UTSKICK_SMTP_CAFILE) picks SMTP; without it, the outbox.

    With ?auth=xoauth2, `tokens(mailbox)` gives where the tokens come from (see `oauth.for_purpose`).
    """
    url = variable("UTSKICK_SMTP_URL")
    if url is None:
        return OutboxTransport(outbox)
    settings = parse_smtp_url(url, variable("UTSKICK_SMTP_PASSWORD"))
    credentials = signing_in(settings.sign_in, tokens) if settings.sign_in is not None else None
    if isinstance(settings.sign_in, TokenWanted) and credentials is None:
        raise UtskickError(Problem("UTSKICK_SMTP_URL: ?auth=xoauth2 needs a token: set UTSKICK_SMTP_TOKEN_COMMAND, "
                                   "or sending.oauth in the settings (see README: Microsoft 365)"))
    cafile = variable("UTSKICK_SMTP_CAFILE")
    return SmtpTransport(settings, sender, tls_context=trusting(cafile.strip()) if cafile else None,
                         credentials=credentials)
