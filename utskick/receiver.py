"""`utskick serve`: the web service that answers the unsubscribe link of every message.

Every message promises mail providers (RFC 8058) that a POST to its link unsubscribes at once,
and link scanners fetch every URL in incoming mail. So a GET only shows a page with one button,
and a POST records the token. The server holds no addresses: it stores opaque tokens until the
project pulls them (`pull`), and answers every token alike, real or invented, so it is no oracle
for guessing. What it accepts is bounded: body size, a rate of stored tokens, the store's size.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import jinja2
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Message

from . import signer
from .errors import UtskickError
from .project import Project
from .model import Settings
from .pull import BATCH, NONCE_HEADER, SIGNATURE_HEADER, TIME_HEADER, WINDOW, pull_path, signed_data, unsubscribe_path
from .receiver_store import Store
from .render import contrast

PAGE = Path(__file__).with_name("receiver.html")
log = logging.getLogger("utskick.serve")

STRINGS = {
    "sv": {
        "confirm": "Avregistrera dig från nyhetsbrevet",
        "confirm_lead": "Vill du sluta få nyhetsbrevet från {name}? Tryck på knappen, så får du inga fler utskick.",
        "button": "Avregistrera mig",
        "done": "Du är avregistrerad",
        "done_lead": "Tack. Vi har tagit emot din avregistrering och du får inga fler nyhetsbrev från {name}.",
        "help": "Får du ändå fler nyhetsbrev? Skriv till",
        "back": "Till webbplatsen",
    },
    "en": {
        "confirm": "Unsubscribe from the newsletter",
        "confirm_lead": "Do you want to stop receiving the newsletter from {name}? Press the button and you will get no more mailings.",
        "button": "Unsubscribe me",
        "done": "You are unsubscribed",
        "done_lead": "Thank you. We have received your request, and you will get no more newsletters from {name}.",
        "help": "Still receiving it? Write to",
        "back": "Go to the website",
    },
}


@dataclass(frozen=True)
class Limits:
    """What one server accepts; generous for a federation, small for anyone flooding it."""

    max_body: int = 16 * 1024  # a one-click POST is some 30 bytes, multipart some 200
    max_pull_body: int = 64 * 1024  # an acknowledgement of BATCH tokens
    burst: int = 300  # tokens stored at once …
    per_minute: int = 60  # … then this many a minute
    max_tokens: int = 100_000  # tokens held until pulled


class Bucket:
    """A token bucket: at most `burst` at once, refilled at `per_second`."""

    def __init__(self, burst: int, per_second: float) -> None:
        self.burst, self.per_second = burst, per_second
        self.level, self.at = float(burst), time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.level = min(self.burst, self.level + (now - self.at) * self.per_second)
        self.at = now
        if self.level < 1:
            return False
        self.level -= 1
        return True


def _style(accent: str) -> str:
    ink = "#ffffff" if contrast(accent, "#ffffff") >= 4.5 else "#000000"
    link = accent if contrast(accent, "#ffffff") >= 4.5 else "#1d232a"
    return (
        "body{margin:0;font:18px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1d232a;background:#fff}"
        f"header{{border-top:6px solid {accent};padding:12px 20px 0}}"
        ".name{margin:0;font-weight:600}"
        "main{max-width:36rem;padding:8px 20px 32px}"
        "h1{font-size:1.6rem;line-height:1.25;margin:16px 0}"
        f"button{{font:inherit;font-weight:600;color:{ink};background:{accent};border:2px solid {accent};"
        "border-radius:6px;padding:12px 24px;min-height:44px;cursor:pointer}"
        "button:focus-visible,a:focus-visible{outline:3px solid #1d232a;outline-offset:3px}"
        f"a{{color:{link}}}.help{{margin-top:24px;color:#3d4650}}"
    )


class Pages:
    """The two pages, in the federation's language and colour."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.words = STRINGS[settings.language]
        self.style = _style(settings.accent_color)
        digest = base64.b64encode(hashlib.sha256(self.style.encode()).digest()).decode()
        # No scripts at all, the one style block by its hash, forms only back to this server.
        self.headers = {
            "Content-Security-Policy": f"default-src 'none'; style-src 'sha256-{digest}'; form-action 'self'; "
                                       "base-uri 'none'; frame-ancestors 'none'",
            "Referrer-Policy": "no-referrer",  # the token is in the URL
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        }
        env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
        self.template = env.from_string(PAGE.read_text("utf-8"))
        self.done = self._render(False, None)

    def _render(self, confirm: bool, action: str | None) -> str:
        s, w = self.settings, self.words
        key = "confirm" if confirm else "done"
        return self.template.render(
            lang=s.language, name=s.name, style=Markup(self.style), heading=w[key],
            lead=w[f"{key}_lead"].format(name=s.name), action=action, button=w["button"],
            mailto=s.unsubscribe.mailto, help=w["help"], website=s.website, back=w["back"])

    def confirmation(self, token: str) -> Response:
        return HTMLResponse(self._render(True, f"?token={quote(token[:64], safe='')}"), headers=self.headers)

    def received(self) -> Response:
        return HTMLResponse(self.done, headers=self.headers)


async def _body(request: Request, limit: int) -> bytes | None:
    """The request body, or None when it is longer than `limit` (read no further)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _form(request: Request, body: bytes, limit: int) -> FormData:
    """Starlette's parser (both encodings RFC 8058 senders use) over the body already read."""
    async def replay() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}
    return await Request(request.scope, replay).form(max_files=0, max_fields=16, max_part_size=limit)


def _too_large() -> Response:
    return PlainTextResponse("request too large", status_code=413)


def create_app(settings: Settings, store: Store, sign: signer.Signer, limits: Limits = Limits()) -> Starlette:
    url = settings.unsubscribe.url
    if url is None:
        raise ValueError("unsubscribe.url is not set")
    pages = Pages(settings)
    bucket = Bucket(limits.burst, limits.per_minute / 60)
    path = pull_path(url)
    dropped = Dropped()

    async def unsubscribe(request: Request) -> Response:
        token = request.query_params.get("token", "")
        if request.method != "POST":
            return pages.confirmation(token)
        body = await _body(request, limits.max_body)
        if body is None:
            return _too_large()
        if (await _form(request, body, limits.max_body)).get("List-Unsubscribe") != "One-Click":
            return pages.confirmation(token)  # not RFC 8058's request, nor the button's: change nothing
        if signer.looks_like_token(token):
            if not bucket.take():
                dropped.note("the rate bound was reached")
            elif not await run_in_threadpool(store.add, token, int(time.time())):
                dropped.note(f"the store holds {limits.max_tokens} tokens: pull them (utskick unsubscribe --pull)")
        return pages.received()

    async def pull(request: Request) -> Response:
        body = await _body(request, limits.max_pull_body)
        if body is None:
            return _too_large()
        refusal = await run_in_threadpool(_refusal, request, body)
        if refusal:
            return JSONResponse({"error": refusal}, status_code=401)
        if request.method == "GET":
            return JSONResponse({"tokens": await run_in_threadpool(store.pending, BATCH)})
        try:
            forget = json_list(body)
        except ValueError as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        return JSONResponse({"forgotten": await run_in_threadpool(store.forget, forget)})

    def _refusal(request: Request, body: bytes) -> str | None:
        stamp = request.headers.get(TIME_HEADER, "")
        nonce = request.headers.get(NONCE_HEADER, "")
        mac = request.headers.get(SIGNATURE_HEADER, "")
        if not (stamp.isdigit() and nonce and mac) or not sign.verify("pull", signed_data(request.method, path, stamp, nonce, body), mac):
            return "signature"
        now = int(time.time())
        if abs(now - int(stamp)) > WINDOW:
            return "stale"
        if not store.first_use(mac, now, WINDOW):
            return "replayed"
        return None

    async def healthz(request: Request) -> Response:
        await run_in_threadpool(store.count)
        return JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})

    return Starlette(routes=[
        Route(unsubscribe_path(url), unsubscribe, methods=["GET", "POST"]),
        Route(path, pull, methods=["GET", "POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ])


def json_list(body: bytes) -> list[str]:
    """The tokens of an acknowledgement: {"forget": ["…", …]}."""
    data = json.loads(body or b"null")
    tokens = data.get("forget") if isinstance(data, dict) else None
    if not isinstance(tokens, list) or len(tokens) > BATCH or not all(isinstance(t, str) for t in tokens):
        raise ValueError(f'expected {{"forget": [at most {BATCH} tokens]}}')
    return tokens


class Dropped:
    """Requests that were answered but not stored, logged at most once a minute (no tokens)."""

    def __init__(self) -> None:
        self.count, self.logged = 0, 0.0

    def note(self, why: str) -> None:
        self.count += 1
        if time.monotonic() - self.logged >= 60:
            log.warning("%d unsubscribe request(s) not stored: %s", self.count, why)
            self.count, self.logged = 0, time.monotonic()


def store_path(project: Project, given: Path | None) -> Path:
    return given if given is not None else project.state_dir / "receiver.db"


def app_for(project: Project, store: Path | None = None, limits: Limits = Limits()) -> Starlette:
    """The app for a project folder: only its newsletter.yaml (and the secret) is needed."""
    if project.settings.unsubscribe.url is None:
        raise UtskickError(project.settings_doc.problem(("unsubscribe", ""), "unsubscribe.url is not set: utskick serve answers that link"))
    return create_app(project.settings, Store(store_path(project, store), limits.max_tokens),
                      signer.load(project.state_dir), limits)

