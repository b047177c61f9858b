"""kill -9 at random moments, then the same command again: nobody twice, nobody lost.

`utskick send` runs as a real subprocess against a real server in this process; the kills land
while messages are on the wire (the server's count decides when), so the journal's states around
each SMTP transaction are what is under test.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import SECRET
from sendkit import write_list
from smtp_server import Recorder, Server

from utskick.journal import Journal

COMMAND = [sys.executable, "-m", "utskick", "send", "2026-12", "--list", "stor", "--yes"]


def throttle(project: Path, rate: str) -> None:
    settings = project / "newsletter.yaml"
    settings.write_text(settings.read_text("utf-8").replace("rate: 30/min", f"rate: {rate}"), "utf-8")


def start(project: Path, server: Server, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "UTSKICK_SMTP_URL": server.url, "UTSKICK_SECRET": SECRET}
    return subprocess.Popen(COMMAND + list(extra), cwd=project, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(server: Server, count: int, proc: subprocess.Popen[str], limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    while len(server.recorder.received) < count and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)


def states(project: Path) -> dict[str, str]:
    with Journal.open(project / ".utskick", "2026-12", "smtp") as j:
        return {r.email: r.shown_state for r in j.rows()}


def test_sigkill_at_random_moments_then_resume(project: Path) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    addresses = write_list(project, 300)
    throttle(project, "250/s")
    with Server(Recorder()) as server:
        kills = 0
        for _ in range(8):
            proc = start(project, server)
            wait_for(server, len(server.recorder.received) + rng.randint(0, 45), proc)
            time.sleep(rng.uniform(0, 0.03))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.communicate(timeout=30)
        final = start(project, server)
        out, err = final.communicate(timeout=60)
        assert final.returncode == 0, (seed, out, err)

        received = Counter(server.recorder.addresses())
        journal = states(project)
        uncertain = {a for a, s in journal.items() if s == "uncertain"}
        assert kills >= 3, seed
        assert set(journal) == set(addresses), seed
        assert set(journal.values()) <= {"sent", "uncertain"}, (seed, Counter(journal.values()))
        assert max(received.values()) == 1, (seed, received.most_common(3))  # nobody twice
        for address in addresses:
            if address not in uncertain:
                assert received[address] == 1, (seed, address, journal[address])  # nobody lost
        assert str(len(uncertain)) in out.split("uncertain ")[1]

        resumed = start(project, server, "--resend-uncertain")
        resumed.communicate(timeout=60)
        assert resumed.returncode == 0
        received = Counter(server.recorder.addresses())
        assert set(states(project).values()) == {"sent"}
        assert all(received[a] >= 1 for a in addresses), seed
        assert {a for a, n in received.items() if n > 1} <= uncertain, seed


@pytest.mark.parametrize("moment", [15, 40])
def test_ctrl_c_finishes_what_is_in_flight_and_exits_130(project: Path, moment: int) -> None:
    addresses = write_list(project, 80)
    throttle(project, "60/s")
    with Server(Recorder()) as server:
        proc = start(project, server)
        wait_for(server, moment, proc)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, (out, err)
        assert "run the same command to resume" in err
        journal = states(project)
        assert "uncertain" not in journal.values()  # in-flight transactions were finished and recorded
        sent = {a for a, s in journal.items() if s == "sent"}
        assert sent == set(server.recorder.addresses()) and 0 < len(sent) < 80

        again = start(project, server)
        again.communicate(timeout=60)
        assert again.returncode == 0
        assert sorted(server.recorder.addresses()) == sorted(addresses)
