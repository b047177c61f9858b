"""One plan for a send, worked out before anything is sent.

Who is on the chosen lists, how many of them this run will mail, through what, how long that
takes at the configured rate and what the day's budget allows: `prepare` reads the journal
once, and `Plan.run` sends. The CLI only prints the plan, asks, and shows the progress.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import delivery
from .budget import Budget, duration, when
from .delivery import Outcome, Policy, Progress, Survey, daily_budget, survey
from .errors import Problem, UtskickError
from .journal import Journal
from .project import Project
from .message import MessageTemplate
from .subscribers import Subscriber
from .transport import Transport


def lists_for(issue_lists: Iterable[str], chosen: Iterable[str], where: Path) -> tuple[str, ...]:
    """`--list` options, else the issue's `lists:`; never "everyone" by accident."""
    lists = tuple(chosen) or tuple(issue_lists)
    if not lists:
        raise UtskickError(Problem("no lists to send to: add 'lists: [name]' to the issue or pass --list NAME", where))
    return lists


@dataclass(frozen=True)
class Plan:
    project: Project
    template: MessageTemplate
    transport: Transport
    recipients: Sequence[Subscriber]
    survey: Survey
    resend_uncertain: bool
    policy: Policy
    budget: Budget | None

    @property
    def resend(self) -> bool:
        """Whether uncertain recipients go again: asked for, or harmless (the outbox)."""
        return self.resend_uncertain or self.transport.idempotent

    @property
    def to_send(self) -> int:
        return self.survey.to_send(self.resend)

    @property
    def per_second(self) -> float | None:
        return self.policy.per_second if self.transport.rate_limited else None

    def timing(self) -> str | None:
        """'2140 recipients at 30/min: about 1 h 12 min', when a rate is set."""
        if not self.per_second or not self.to_send:
            return None
        rate = self.project.settings.sending.rate
        return f"{self.to_send} recipients at {rate}: {duration(self.to_send / self.per_second)}"

    def over_budget(self) -> str | None:
        """"over the day's budget: 1140 go after 09:14 tomorrow", when the budget cannot take all."""
        if self.budget is None or self.to_send <= self.budget.left:
            return None
        later = self.to_send - self.budget.left
        # Those within the budget go now; the first of the rest when the oldest leaves the window.
        start = Budget(self.budget.limit, self.budget.spent, self.budget.taken + self.budget.left).frees_at(1)
        return f"over the day's budget of {self.budget.limit}: {later} go after {when(start)} (run the same command then)"

    def run(self, on_progress: Progress | None = None) -> Outcome:
        """Send. With nothing left to send it still settles what an earlier run left, should that
        run have been killed before it got so far: its bounces go to unsubscribed.csv."""
        if self.to_send == 0 and not Journal.exists(self.project.state_dir):
            return Outcome(self.survey.counts)
        return delivery.send(self.project, self.template, self.transport, self.recipients,
                             resend_uncertain=self.resend_uncertain, policy=self.policy, on_progress=on_progress)


def prepare(project: Project, template: MessageTemplate, transport: Transport, recipients: Sequence[Subscriber],
            resend_uncertain: bool = False) -> Plan:
    """The plan, from one read of the journal (nothing is written: a dry run leaves no trace)."""
    policy = Policy.of(project.settings.sending)
    per_day = project.settings.sending.per_day
    if not Journal.exists(project.state_dir):
        found, budget = survey(None, recipients, record=False), daily_budget(None, per_day, transport)
    else:
        with Journal.open(project.state_dir, template.rendered.slug, transport.kind) as journal:
            found, budget = survey(journal, recipients, record=False), daily_budget(journal, per_day, transport)
    return Plan(project, template, transport, recipients, found, resend_uncertain, policy, budget)
