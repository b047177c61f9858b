"""`unsubscribe --pull`: bring the one-click requests `utskick serve` recorded into the project.

The server holds only tokens; the lists are here. So the project fetches the tokens, resolves
and suppresses them exactly as `utskick unsubscribe TOKEN` does, and only then tells the server
to forget them: an interrupted pull loses nothing, and running it again changes nothing.

Both sides sign with the same secret (`signer`, purpose "pull") over method, path, timestamp,
a nonce and the body; `signed_data` is the one definition of those bytes, used by both.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from . import signer, suppression
from .addresses import is_loopback
from .errors import Problem, UtskickError
from .project import Project

TIME_HEADER = "X-Utskick-Time"
NONCE_HEADER = "X-Utskick-Nonce"
SIGNATURE_HEADER = "X-Utskick-Signature"
WINDOW = 300  # seconds a request's timestamp may differ from the server's clock
BATCH = 1000  # tokens per answer, and per acknowledgement
REASON = "one-click unsubscribe (utskick serve)"
TIMEOUT = 15.0


def signed_data(method: str, path: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    return f"{method.upper()}\n{path}\n{timestamp}\n{nonce}\n".encode() + body


def unsubscribe_path(url: str) -> str:
    return urlsplit(url).path or "/"


def pull_path(url: str) -> str:
    """Under the unsubscribe path, so that one reverse-proxy rule serves both."""
    return unsubscribe_path(url).rstrip("/") + "/pull"


def origin(project: Project, given: str | None) -> str:
    """scheme://host[:port] of the server: `given`, else that of unsubscribe.url."""
    url = project.settings.unsubscribe.url
    if url is None:
        raise UtskickError(project.settings_doc.problem(("unsubscribe", ""), "unsubscribe.url is not set: there is no server to pull from"))
    def bad(message: str) -> UtskickError:
        if given:
            return UtskickError(Problem(message, where="--pull"))
        return UtskickError(project.settings_doc.problem(("unsubscribe", "url", ""), message))
    parts = urlsplit(given or url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise bad(f"{given!r} is not a web address: give https://host[:port]")
    if given and (parts.path not in ("", "/") or parts.query):
        raise bad("give only https://host[:port]: the path is that of unsubscribe.url")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise bad(f"plain http only to a loopback address, not {parts.hostname}: use https")
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


@dataclass
class Pulled:
    """What one pull did: tokens fetched, people newly and already suppressed, tokens of nobody."""

    server: str
    received: int = 0
    added: int = 0
    already: int = 0
    unknown: int = 0

    def summary(self) -> str:
        return (f"pulled {self.received} unsubscribe request(s) from {self.server}: {self.added} added, "
                f"{self.already} already unsubscribed, {self.unknown} belonging to nobody")


class Client:
    """Signed requests to one server's pull endpoint."""

    def __init__(self, server: str, path: str, sign: signer.Signer, timeout: float = TIMEOUT) -> None:
        self.server, self.path, self._signer, self.timeout = server, path, sign, timeout

    def call(self, method: str, body: bytes = b"", timestamp: int | None = None) -> Any:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        nonce = secrets.token_hex(16)
        mac = self._signer.mac("pull", signed_data(method, self.path, stamp, nonce, body))
        headers = {TIME_HEADER: stamp, NONCE_HEADER: nonce, SIGNATURE_HEADER: mac,
                   "Content-Type": "application/json", "User-Agent": "utskick"}
        request = urllib.request.Request(self.server + self.path, data=body if method == "POST" else None,
                                         headers=headers, method=method)
        where = f"{self.server}{self.path}"
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as e:
            raise UtskickError(Problem(_refusal(e), where=where)) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", None) or e
            raise UtskickError(Problem(f"cannot reach the server: {reason}", where=where)) from None
        except ValueError:
            raise UtskickError(Problem("the answer is not utskick serve's (not JSON)", where=where)) from None


def _refusal(e: urllib.error.HTTPError) -> str:
    try:
        why = json.loads(e.read()).get("error", "")
    except (ValueError, AttributeError, OSError):
        why = ""
    if why == "signature":
        return ("the server refused the pull: it signs with another secret; set the same UTSKICK_SECRET "
                "where utskick serve runs and where you send")
    if why == "stale":
        return "the server refused the pull as stale: this computer's clock and the server's differ by more than 5 minutes"
    if why == "replayed":
        return "the server refused the pull as a replay: run it again"
    if e.code == 404:
        return "no utskick serve answers here (does the reverse proxy pass the unsubscribe path and what is under it?)"
    return f"the server answered HTTP {e.code}"


def pull(project: Project, given: str | None = None, reason: str = REASON, timeout: float = TIMEOUT) -> Pulled:
    """Fetch, suppress, then acknowledge, batch by batch, until the server holds nothing."""
    url = project.settings.unsubscribe.url
    server = origin(project, given)
    assert url is not None
    client = Client(server, pull_path(url), signer.load(project.state_dir), timeout)
    done = Pulled(server)
    seen: set[str] = set()
    while True:
        tokens = [t for t in client.call("GET").get("tokens", []) if isinstance(t, str)]
        if not tokens:
            return done
        if seen.issuperset(tokens):
            raise UtskickError(Problem("the server did not forget the requests it was told to", where=server))
        seen.update(tokens)
        wellformed = [t for t in tokens if signer.looks_like_token(t)]
        result = suppression.unsubscribe(project, [suppression.Request(t) for t in wellformed], reason)
        done.received += len(tokens)
        done.added += len(result.added)
        done.already += len(result.already)
        # Every request given is a token: each problem is one that belongs to nobody.
        done.unknown += len(result.problems) + len(tokens) - len(wellformed)
        client.call("POST", json.dumps({"forget": tokens}).encode())
