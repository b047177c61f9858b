"""A relay's daily budget of recipients, counted over a rolling 24 hours from the journal.

Microsoft 365 lets one mailbox send to 10,000 recipients in any 24 hours and then refuses
everything for a day; a budget kept here stops the send just before that, across issues and
runs, whatever the concurrency, and says when the rest may go.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

WINDOW = timedelta(hours=24)


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


@dataclass
class Budget:
    """`limit` recipients in any 24 hours; `spent` are the submission times inside the window
    when the send started (oldest first), `taken` what this run has used since."""

    limit: int
    spent: list[datetime] = field(default_factory=list)
    taken: int = 0

    @classmethod
    def of(cls, limit: int, submitted: list[str]) -> Budget:
        return cls(limit, [_parse(s) for s in submitted])

    @staticmethod
    def window_start(now: datetime | None = None) -> str:
        return ((now or datetime.now(timezone.utc)) - WINDOW).isoformat(timespec="milliseconds")

    @property
    def left(self) -> int:
        return max(0, self.limit - len(self.spent) - self.taken)

    def take(self) -> bool:
        """Claim one recipient before their transaction starts; False when the budget is spent.
        Never given back, even if the transaction fails: the budget is never exceeded."""
        if self.left == 0:
            return False
        self.taken += 1
        return True

    def frees_at(self, wanted: int = 1) -> datetime:
        """When `wanted` more recipients fit in the window: the moment the oldest submissions
        leave it (what this run took counts as sent now)."""
        now = datetime.now(timezone.utc)
        times = self.spent + [now] * self.taken
        over = len(times) + wanted - self.limit
        if over <= 0:
            return now
        return times[min(over, len(times)) - 1] + WINDOW


def when(moment: datetime) -> str:
    """'09:14' today, '09:14 tomorrow', else the date: local time, as the person sending reads it."""
    local = moment.astimezone()
    today = datetime.now().astimezone().date()
    days = (local.date() - today).days
    clock = local.strftime("%H:%M")
    return clock if days <= 0 else f"{clock} tomorrow" if days == 1 else f"{clock} on {local.date().isoformat()}"


def duration(seconds: float) -> str:
    """'about 1 h 12 min', 'about 4 min', 'under a minute'."""
    minutes = round(seconds / 60)
    if minutes < 1:
        return "under a minute"
    hours, minutes = divmod(minutes, 60)
    return "about " + (f"{hours} h {minutes} min" if hours else f"{minutes} min")
