"""What every transport shares: the typed errors a connection raises and the small contract
a backend fulfils (Django's mail backends are the model: one interface picked by
configuration, so the delivery loop, the journal and the tests never care which one is in use).
A transport opens `Connection`s; a connection carries one message at a time and raises typed
errors that say what the delivery loop must do next (retry, bounce, stop), with the server's
code and the recipient."""

from __future__ import annotations

from typing import Callable, Literal, Protocol

Stage = Literal["connect", "tls", "auth", "mail", "rcpt", "data"]
SMTP_TIMEOUT = 60.0


class TransportError(Exception):
    """A failed step, typed like aiosmtplib's errors: the reply code and text and the recipient."""

    def __init__(self, message: str, *, code: int | None = None, recipient: str | None = None,
                 stage: Stage = "data", hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.recipient = recipient
        self.stage = stage
        self.hint = hint
        """What to do about it, for the person running the send ("" when the reply says it all)."""

    @property
    def reply(self) -> str:
        """The server's reply as it would appear in a log: '550 5.1.1 no such user'."""
        return f"{self.code} {self.message}" if self.code else self.message


class Temporary(TransportError):
    """Try again later (4xx, a dropped connection, a timeout); `reconnect` when the link is gone."""

    def __init__(self, message: str, *, reconnect: bool = False, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.reconnect = reconnect


class Bounced(TransportError):
    """This recipient can never be delivered (5.1.x to RCPT): suppress them, carry on."""


class Fatal(TransportError):
    """The server refuses the sender or us (535, 5.7.x, TLS, refused): stop the whole send."""


class BudgetReached(Fatal):
    """The relay's sending budget is spent (Microsoft 365's quota): stop, suppress nobody, and
    come back later (exit 75)."""


Committing = Callable[[], None]


class Connection(Protocol):
    async def send(self, seq: int, recipient: str, message: bytes, committing: Committing,
                   then: str | None = None) -> str:
        """Deliver one message; call `committing` just before the server can accept it.

        `then`: the recipient the next `send` on this connection will be for, when the caller
        knows it; a backend may start that transaction early (and abandons it, delivering
        nothing, should the next call be for someone else or be `close`). Returns the server's
        final reply. Raises `TransportError`s.
        """

    async def close(self) -> None: ...


class Transport(Protocol):
    kind: str
    """The journal's name for it ("smtp", "outbox"): a relay change resumes the send."""
    label: str
    """How the confirmation names it."""
    idempotent: bool
    """Sending one recipient twice cannot mail them twice (outbox): no uncertain state."""
    rate_limited: bool
    """Whether `sending.rate` applies: it is the relay's limit, not the disk's."""

    async def connect(self) -> Connection: ...
