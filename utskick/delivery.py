"""The send loop: a pool of connections, a shared rate limit, retries, and a journal entry
around every SMTP transaction, so that a re-run of the same command resumes where it stopped.

Recipients come from `subscribers.recipients` (each person once, suppressed left out) and are
never held as messages: each worker renders one recipient's bytes, sends them,
forgets them.
What a reply means is decided in `replies`; what it does to the send is decided here:

* 4xx and dropped connections: back off (exponential, jittered) and retry, then `failed`;
* a relay that cannot be reached (no greeting, 421 at the greeting, a timeout) is not the
  recipient's fault: retried without counting against anyone, and more than `retries` such
  failures in a row stop the send;
* 5.1.x to RCPT: `bounced`, suppressed at the end of the run; a streak of them stops the send,
  because a relay that refuses everyone is not a list of bad addresses;
* any other 5xx, 535, TLS, refused: stop at once, suppress nobody, leave the rest pending;
* Ctrl-C: finish the transactions in flight, record them, stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from . import suppression
from .budget import Budget, when
from .errors import Problem, UtskickError
from .files import locked
from .journal import Counts, Journal, Row, State, unusable
from .project import Project
from .message import MessageTemplate
from .model import Sending
from .subscribers import Subscriber
from .transport import BudgetReached, Bounced, Connection, Fatal, Temporary, Transport, TransportError

STOP_SIGNALS = [s for s in (signal.SIGINT, getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None]

BOUNCE_STREAK = 5
"""This many 5.1.x refusals in a row stop the send: the relay, not the list, is probably wrong."""


class BounceStreak(Fatal):
    """A streak of unknown-address refusals stopped the send; the message says how to go on."""


@dataclass(frozen=True)
class Policy:
    concurrency: int = 4
    per_second: float | None = None
    retries: int = 5
    backoff: float = 2.0
    """Seconds before the first retry; doubled (with jitter) for each further one."""
    backoff_cap: float = 60.0
    bounce_streak: int = BOUNCE_STREAK

    @classmethod
    def of(cls, sending: Sending) -> Policy:
        return cls(sending.concurrency, sending.per_second, sending.retries)

    def delay(self, tries: int) -> float:
        return float(min(self.backoff_cap, self.backoff * 2 ** (tries - 1)) * random.uniform(0.5, 1.5))


@dataclass
class Survey:
    """Where the lists stand against the journal, before anything is sent."""

    recipients: int = 0
    counts: Counts = field(default_factory=Counts)
    first: Subscriber | None = None

    def to_send(self, resend_uncertain: bool) -> int:
        c = self.counts
        return c.pending + c.failed + (c.uncertain if resend_uncertain else 0)


def survey(journal: Journal | None, recipients: Iterable[Subscriber], record: bool) -> Survey:
    """Count the recipients by journal state; with `record`, enter the new ones as pending."""
    s = Survey()
    top = journal.top() if journal and record else 0
    fresh = record and top == 0  # nothing entered yet: no row to look up
    with journal.batch() if journal and record else contextlib.nullcontext():
        for sub in recipients:
            s.first = s.first or sub
            s.recipients += 1
            row = journal.get(sub.key) if journal and not fresh else None
            if row is None and journal and record:
                top += 1
                row = journal.add(sub.key, sub.email, top)
            s.counts.add(row.state if row else "pending")
    return s


@dataclass
class Outcome:
    counts: Counts
    stopped: TransportError | None = None
    interrupted: bool = False
    suppressed: list[str] = field(default_factory=list)
    uncertain: list[Row] = field(default_factory=list)
    signal: int = signal.SIGINT
    """What interrupted it: Ctrl-C, SIGTERM (systemd, docker stop) or SIGHUP (a closed terminal)."""

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 128 + self.signal  # 130, 143, 129
        if isinstance(self.stopped, BudgetReached):
            return 75  # EX_TEMPFAIL: nothing is wrong; run the same command later
        return 1 if self.stopped or self.all_failed else 0

    @property
    def all_failed(self) -> bool:
        """Nobody got it and everyone failed: the run completed, but nothing worked."""
        c = self.counts
        return c.failed > 0 and c.sent == c.pending == c.uncertain == 0


Progress = Callable[[Counts, int], None]
"""Called after every recorded change with the counts and how many finished in this run."""


class RateLimiter:
    """Evenly spaced slots across all connections: `30/min` means one transaction every 2 s."""

    def __init__(self, per_second: float | None) -> None:
        self.interval = 1 / per_second if per_second else 0.0
        self.next = 0.0

    def reserve(self) -> float:
        """Seconds to wait for the next free slot (claimed now)."""
        if not self.interval:
            return 0.0
        now = asyncio.get_running_loop().time()
        at = max(now, self.next)
        self.next = at + self.interval
        return at - now


class Delivery:
    def __init__(self, journal: Journal, transport: Transport, template: MessageTemplate,
                 policy: Policy, counts: Counts, resend_uncertain: bool, on_progress: Progress | None,
                 budget: Budget | None = None) -> None:
        self.journal = journal
        self.budget = budget
        self.transport = transport
        self.template = template
        self.policy = policy
        self.counts = counts
        self.resend = resend_uncertain or transport.idempotent
        self.on_progress = on_progress
        self.limiter = RateLimiter(policy.per_second if transport.rate_limited else None)
        self.stopping = asyncio.Event()
        self.stopped: TransportError | None = None
        self.interrupted = False
        self.signal: int = signal.SIGINT
        self.finished = 0
        self.streak: list[tuple[str, str]] = []
        self.unreachable_streak = 0

    def stop(self, error: TransportError | None, signum: int = signal.SIGINT) -> None:
        """Stop after the transactions in flight: on an error, or (None) on a signal."""
        if error is not None and self.stopped is None:
            self.stopped = error
        if error is None and not self.interrupted:
            self.interrupted, self.signal = True, signum
        self.stopping.set()

    async def pause(self, seconds: float) -> bool:
        """Sleep, unless the send is stopping; True when the send may go on."""
        if seconds > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), seconds)
        return not self.stopping.is_set()

    def record(self, key: str, old: State, new: State, reply: str, attempt: bool) -> None:
        (self.journal.attempt if attempt else self.journal.done)(key, new, reply)
        self.record_move(old, new)

    def report(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.counts, self.finished)

    async def produce(self, recipients: Iterable[Subscriber], queue: asyncio.Queue[tuple[Subscriber, Row] | None]) -> None:
        """Queue who is left; those a bounce streak put back go last, after the relay has shown
        whether it accepts the others (a few dead addresses in a row must not block every run)."""
        deferred: list[tuple[Subscriber, Row]] = []
        for sub in recipients:
            if self.stopping.is_set():
                break
            row = self.journal.get(sub.key)
            if row is None or row.state in ("sent", "bounced"):
                continue
            if row.state == "inflight" and not self.resend:
                continue
            if row.state == "deferred":
                deferred.append((sub, row))
                continue
            await queue.put((sub, row))
        for item in deferred:
            if self.stopping.is_set():
                break
            await queue.put(item)
        # Only on the way out normally: should a worker fail, the task group cancels everyone,
        # and a put on a full queue nobody reads would wait for ever.
        for _ in range(self.policy.concurrency):
            await queue.put(None)

    async def work(self, queue: asyncio.Queue[tuple[Subscriber, Row] | None]) -> None:
        """Deliver from the queue until its end; each worker takes the item after the one it
        sends when one is waiting, so its connection can start that transaction early (`then`).
        Not under a rate limit: there the pause between messages, not round trips, sets the pace."""
        connection: Connection | None = None
        ahead: list[tuple[Subscriber, Row] | None] = []
        try:
            while (item := ahead.pop() if ahead else await queue.get()) is not None:
                if not self.limiter.interval and not queue.empty():
                    ahead.append(queue.get_nowait())
                then = ahead[0][0].email if ahead and ahead[0] is not None else None
                if not self.stopping.is_set():
                    connection = await self.deliver(connection, *item, then=then)
        finally:
            if connection is not None:
                await connection.close()

    async def deliver(self, connection: Connection | None, sub: Subscriber, row: Row,
                      then: str | None = None) -> Connection | None:
        """One recipient through to a recorded outcome (or left pending when the send stops)."""
        state: State = row.state
        try:
            message = self.template.message_for(sub)
        except (UnicodeError, ValueError) as e:
            # An address SMTP cannot carry without SMTPUTF8: this recipient fails, not the send.
            self.record(sub.key, state, "failed", f"cannot build the message: {e}", attempt=True)
            self.finished += 1
            return connection
        if self.budget is not None and not self.budget.take():
            self.stop(budget_reached(self.budget, self.counts))
            return connection
        tries = 0
        while await self.pause(self.limiter.reserve()):
            committed = False

            def committing() -> None:
                nonlocal committed, state
                self.journal.inflight(sub.key, self.template.message_id(sub))
                self.record_move(state, "inflight")
                committed, state = True, "inflight"

            if connection is None:
                try:
                    connection = await self.transport.connect()
                except Temporary as e:
                    if await self.unreachable(e):
                        continue
                    return None
                except Fatal as e:
                    self.stop(e)
                    return None
                self.unreachable_streak = 0
            try:
                reply = await connection.send(row.seq, sub.email, message, committing, then)
            except Bounced as e:
                self.record(sub.key, state, "bounced", e.reply, attempt=not committed)
                # Refused on an earlier run too, and the relay has accepted others: a real bounce.
                if not (row.state == "deferred" and self.counts.sent > 0):
                    self.bounced(sub.key, e)
            except Temporary as e:
                if e.reconnect and connection is not None:
                    await connection.close()
                    connection = None
                if committed and e.code is None and not self.transport.idempotent:
                    # DATA went out and no verdict came back: the honest gap, never guessed.
                    self.journal.done(sub.key, "inflight", e.reply)
                else:
                    tries += 1
                    final = tries > self.policy.retries
                    self.record(sub.key, state, "failed" if final else "pending", e.reply, attempt=not committed)
                    state = "failed" if final else "pending"
                    if not final:
                        self.report()
                        if await self.pause(self.policy.delay(tries)):
                            continue
                        return connection
            except Fatal as e:
                self.record(sub.key, state, "pending", e.reply, attempt=not committed)
                self.stop(e)
                return connection
            else:
                self.record(sub.key, state, "sent", reply, attempt=False)
                self.streak = []
                self.unreachable_streak = 0
            self.finished += 1
            self.report()
            return connection
        return connection

    async def unreachable(self, error: Temporary) -> bool:
        """A connection that cannot be opened is the relay's trouble, not the recipient's: it counts
        against the send, and too many in a row (no message accepted between) stop it, instead of
        marking the whole list failed against a dead relay. True when the send may try again."""
        self.unreachable_streak += 1
        if self.unreachable_streak > self.policy.retries:
            self.stop(Fatal(f"the relay could not be reached {self.unreachable_streak} times in a row "
                            f"(last: {error.message})", stage="connect"))
            return False
        return await self.pause(self.policy.delay(self.unreachable_streak))

    def record_move(self, old: State, new: State) -> None:
        self.counts.add(old, -1)
        self.counts.add(new)

    def bounced(self, key: str, error: Bounced) -> None:
        """Count a bounce towards the streak; a streak puts all of its bounces back to pending
        (and so does every bounce still in flight once it has stopped the send)."""
        self.streak.append((key, error.reply))
        stopped = isinstance(self.stopped, BounceStreak)
        if not stopped and len(self.streak) < self.policy.bounce_streak:
            return
        for k, reply in self.streak:
            self.record(k, "bounced", "deferred", reply, attempt=False)
            self.finished -= 1
        if not stopped:
            self.stop(BounceStreak(
                f"{len(self.streak)} recipients in a row were refused as unknown addresses (last: {error.reply}), "
                "so the relay may be refusing everyone: check it, then run the same command to resume; "
                "on that run these addresses go last, and those refused again are recorded as bounced",
                stage="rcpt"))
        self.streak = []


async def _run(delivery: Delivery, recipients: Iterable[Subscriber]) -> None:
    loop = asyncio.get_running_loop()
    handled: list[int] = []
    # A first Ctrl-C, SIGTERM or SIGHUP stops gracefully (finish and record what is in flight);
    # the handler then steps aside so a second one is abrupt.
    for signum in STOP_SIGNALS:
        def interrupt(signum: int = signum) -> None:
            loop.remove_signal_handler(signum)
            delivery.stop(None, signum)
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            loop.add_signal_handler(signum, interrupt)
            handled.append(signum)
    try:
        queue: asyncio.Queue[tuple[Subscriber, Row] | None] = asyncio.Queue(maxsize=2 * delivery.policy.concurrency)
        # A task group: should a worker fail unexpectedly, nothing waits forever on the queue.
        async with asyncio.TaskGroup() as group:
            for _ in range(delivery.policy.concurrency):
                group.create_task(delivery.work(queue))
            group.create_task(delivery.produce(recipients, queue))
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)


@contextlib.contextmanager
def send_lock(state_dir: Path) -> Iterator[None]:
    """One `send` at a time per project: two would both see a recipient as pending."""
    with locked(state_dir / "send.lock", wait=False) as acquired:
        if not acquired:
            raise UtskickError(Problem("another 'utskick send' is running in this project; wait for it to finish",
                                       state_dir / "send.lock"))
        yield


def send(project: Project, template: MessageTemplate, transport: Transport, recipients: Sequence[Subscriber], *,
         resend_uncertain: bool = False, policy: Policy | None = None, on_progress: Progress | None = None) -> Outcome:
    """Send one issue to `recipients`, resuming whatever an earlier run left.

    SMTP trouble never raises: it ends in the outcome (stopped, interrupted, the counts).
    """
    policy = policy or Policy.of(project.settings.sending)
    try:
        return _send(project, template, transport, recipients, resend_uncertain, policy, on_progress)
    except sqlite3.Error as e:
        # Locked past the busy timeout, a full disk, a damaged file: every row still says what is
        # true (a state is written after the fact it records), so the same command resumes.
        raise unusable(e, project.state_dir) from None


def _send(project: Project, template: MessageTemplate, transport: Transport, recipients: Sequence[Subscriber],
          resend_uncertain: bool, policy: Policy, on_progress: Progress | None) -> Outcome:
    with send_lock(project.state_dir), Journal.open(project.state_dir, template.rendered.slug, transport.kind) as journal:
        plan = survey(journal, recipients, record=True)
        budget = daily_budget(journal, project.settings.sending.per_day, transport)
        delivery = Delivery(journal, transport, template, policy, plan.counts, resend_uncertain, on_progress, budget)
        if budget is not None and budget.left == 0 and plan.to_send(delivery.resend) > 0:
            delivery.stop(budget_reached(budget, plan.counts))
        try:
            asyncio.run(_run(delivery, recipients))
        except BaseExceptionGroup as group:
            raise group.exceptions[0] from None
        if isinstance(delivery.stopped, BudgetReached) and delivery.stopped.code is None and budget is not None:
            delivery.stopped = budget_reached(budget, delivery.counts)  # what is left once all have finished
        suppressed = suppress_bounced(project, journal)
        uncertain = [] if transport.idempotent else list(journal.rows("inflight"))
        return Outcome(delivery.counts, delivery.stopped, delivery.interrupted, suppressed, uncertain, delivery.signal)


def daily_budget(journal: Journal | None, per_day: int | None, transport: Transport) -> Budget | None:
    """What `sending.per_day` still allows a relay (the outbox has no budget; no journal yet,
    nothing spent)."""
    if per_day is None or not transport.rate_limited:
        return None
    return Budget.of(per_day, journal.submitted_since(Budget.window_start()) if journal else [])


def budget_reached(budget: Budget, counts: Counts) -> BudgetReached:
    left = counts.pending + counts.failed
    return BudgetReached(f"the daily budget of {budget.limit} recipients is reached", stage="connect",
                         hint=f"{left} left to send; the budget allows more from {when(budget.frees_at())}")


def suppress_bounced(project: Project, journal: Journal) -> list[str]:
    """Every bounce in the journal goes to unsubscribed.csv (idempotent): at the end of each run,
    and on a run with nothing left to send, for a run killed before it got that far."""
    bounced = [(r.email, f"bounced: {r.reply}") for r in journal.rows("bounced")]
    return suppression.suppress(project, bounced) if bounced else []
