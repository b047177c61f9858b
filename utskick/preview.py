"""A live preview server editors keep open beside their YAML.

The email is rendered when a watched file changes, never per request: premailer takes a good
part of a second, and the page asks again on every change. The result (or the located problems
of a half-written file) is kept as one immutable `View`; request threads only read it. Pages
learn about a new view through server-sent events, so nothing polls.
"""

from __future__ import annotations

import functools
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jinja2
import watchfiles

from .errors import Problem, UtskickError, display_path
from . import subscribers as subs
from .load import load_issue
from .project import Project, load_project
from .message import MessageTemplate, personalise
from . import images
from .images import Picture
from .render import GMAIL_CLIP, Rendered, render
from .signer import Signer
from .subscribers import Subscriber

HOST = "127.0.0.1"
PAGE = Path(__file__).resolve().parent / "preview.html"
KEEPALIVE = 15.0
SNIPPET = 140
# A browser cannot fetch cid: parts of a MIME message; the preview serves them at /cid/.
CID_RE = re.compile(r"""(?<=["'(])cid:""")
# Images are only ever the pipeline's own JPEG, PNG or GIF; even so, nothing in them may run.
IMAGE_HEADERS = {"Content-Security-Policy": "default-src 'none'; sandbox", "X-Content-Type-Options": "nosniff"}


@dataclass(frozen=True)
class Email:
    """One good render, personalised for the previewed subscriber."""

    version: int
    subject: str
    sender: str
    snippet: str
    has_preheader: bool
    html: str
    text: str
    html_size: int
    message_size: int
    images: dict[str, Picture]  # by Content-ID
    files: tuple[Path, ...]


@dataclass(frozen=True)
class View:
    """What the page shows now: the latest problems and the latest email that rendered."""

    version: int
    problems: tuple[Problem, ...]
    email: Email | None
    page: bytes = b""

    @property
    def failed(self) -> bool:
        return any(p.is_error for p in self.problems)


@dataclass
class Preview:
    """An issue, re-rendered on every save, for one subscriber. `project` is as it was at the
    start, for its paths: the settings themselves are read again on every save."""

    project: Project
    issue_path: Path
    subscriber: Subscriber
    signer: Signer
    view: View = field(default_factory=lambda: View(0, (), None))
    closing: threading.Event = field(default_factory=threading.Event)
    watching: threading.Event = field(default_factory=threading.Event)
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def refresh(self) -> None:
        """Render again; on problems keep the last good email so the page never goes blank."""
        version, email = self.view.version + 1, self.view.email
        try:
            email, problems = self._email(version)
        except UtskickError as e:
            problems = tuple(e.problems)
        except Exception as e:  # noqa: BLE001 - a mid-edit file must never stop the preview
            problems = (Problem(f"could not render: {type(e).__name__}: {e}", self.issue_path),)
        view = View(version, problems, email)
        view = replace(view, page=page(self, view))
        with self._changed:
            self.view = view
            self._changed.notify_all()

    def _email(self, version: int) -> tuple[Email, tuple[Problem, ...]]:
        project = load_project(self.project.settings_path)
        rendered = render(project, load_issue(self.issue_path))
        personal = personalise(rendered, self.subscriber, self.signer)
        preheader = rendered.issue.preheader
        opening = " ".join(personal.text.split())
        return Email(
            version=version,
            subject=rendered.issue.subject,
            sender=rendered.settings.sender.name,
            snippet=preheader or opening[:SNIPPET],
            has_preheader=bool(preheader),
            html=self._local_links(rendered, personal.html),
            text=personal.text,
            html_size=len(personal.html.encode()),
            message_size=len(MessageTemplate.of(rendered, self.signer).message_for(self.subscriber)),
            images={p.cid: p for p in rendered.pictures},
            files=rendered.files,
        ), rendered.problems + tuple(self._list_problems(project, rendered))

    @staticmethod
    def _local_links(rendered: Rendered, html: str) -> str:
        """The email's images as the preview serves them: the issue's files are not published yet."""
        if rendered.settings.images == "hosted":
            for picture in rendered.pictures:
                html = html.replace(f'"{images.hosted_url(rendered.settings, picture)}"', f'"cid:{picture.cid}"')
        return CID_RE.sub("/cid/", html)

    @staticmethod
    def _list_problems(project: Project, rendered: Rendered) -> list[Problem]:
        """The same list problems `check` shows for the issue's own lists."""
        if not rendered.issue.lists:
            return []
        return subs.check_lists(project, rendered.issue.lists, rendered.fields, required=False)

    def wait(self, seen: int, timeout: float) -> int:
        """The view's version once it differs from `seen` (or after `timeout`, or on close)."""
        with self._changed:
            self._changed.wait_for(lambda: self.view.version != seen or self.closing.is_set(), timeout)
            return self.view.version

    def close(self) -> None:
        self.closing.set()
        with self._changed:
            self._changed.notify_all()

    @property
    def templates_dir(self) -> Path:
        return self.project.templates_dir.resolve()

    def watched(self) -> tuple[set[Path], set[Path]]:
        """(folders to watch, files in them that matter); folders so editors' rename-saves count."""
        files = {self.project.settings_path, self.issue_path, self.templates_dir,
                 *self.project.subscribers_dir.glob("*.csv")}
        if self.view.email is not None:
            files.update(self.view.email.files)
        files = {f.resolve() for f in files}
        folders = {f.parent for f in files} | {self.templates_dir}
        return {d for d in folders if d.is_dir()}, files

    def watch(self) -> None:
        """Refresh on every relevant save until `close()`; restarts when the image folders change."""
        catch_up = False  # a restarted watch may have missed a save made while it set up
        while not self.closing.is_set():
            folders, files = self.watched()
            # A photo dropped in beside the others counts too: the issue may name it already.
            image_dirs = {f.resolve().parent for f in self.view.email.files} if self.view.email else set()

            def relevant(_: watchfiles.Change, path: str) -> bool:
                p = Path(path).resolve()
                return (p in files or p.parent == self.templates_dir
                        or (p.parent in image_dirs and p.suffix.lower() in images.FORMATS))

            try:
                for changes in watchfiles.watch(*folders, watch_filter=relevant, debounce=400, step=50,
                                                stop_event=self.closing, recursive=False,
                                                rust_timeout=250, yield_on_timeout=True):
                    if changes or catch_up:
                        catch_up = False
                        self.refresh()
                        if self.watched() != (folders, files):
                            catch_up = True
                            break
                    self.watching.set()
            except OSError:  # a watched folder went away mid-save: look again shortly
                catch_up = True
                self.closing.wait(0.5)


@functools.cache
def _page_template() -> jinja2.Template:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(PAGE.read_text("utf-8"))


def page(preview: Preview, view: View) -> bytes:
    """The whole page, made once per view; the browser swaps in its parts on each change."""
    email = view.email
    size = email.html_size if email else 0
    return _page_template().render(
        view=view,
        email=email,
        issue=display_path(preview.issue_path),
        subscriber=preview.subscriber,
        problems=[(p.severity, str(p)) for p in view.problems],
        errors=sum(p.is_error for p in view.problems),
        clip_kb=GMAIL_CLIP // 1024,
        size_kb=f"{size / 1024:.0f}",
        message_kb=f"{email.message_size / 1024:.0f}" if email else "0",
        size_percent=min(100, round(size * 100 / GMAIL_CLIP)),
        size_state="over" if size > GMAIL_CLIP else ("near" if size > GMAIL_CLIP * 3 // 4 else "ok"),
    ).encode()


def local_host(host: str | None, port: int) -> bool:
    """Whether a Host header names this preview; on port 80 a browser leaves the port out."""
    names = ("127.0.0.1", "localhost")
    return host in {f"{n}:{port}" for n in names} | (set(names) if port == 80 else set())


class Handler(BaseHTTPRequestHandler):
    server: PreviewServer

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        view = self.server.preview.view
        path = self.path.split("?", 1)[0]
        if not local_host(self.headers.get("Host"), self.server.server_address[1]):
            # Binding to loopback does not stop DNS rebinding: a web page the editor visits could
            # otherwise read the preview, with a real subscriber's name and token under --as.
            self.send_error(HTTPStatus.FORBIDDEN)
        elif path == "/":
            self._send("text/html; charset=utf-8", view.page)
        elif path == "/email.html" and view.email:
            # The email must not run scripts anywhere; mail clients would not run them either.
            self._send("text/html; charset=utf-8", view.email.html.encode(),
                       {"Content-Security-Policy": "script-src 'none'; object-src 'none'"})
        elif path.startswith("/cid/") and view.email and path[5:] in view.email.images:
            image = view.email.images[path[5:]]
            self._send(image.mime, image.data, IMAGE_HEADERS)
        elif path == "/events":
            self._events()
        else:
            self.send_error(HTTPStatus.NOT_FOUND)

    def _send(self, kind: str, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _events(self) -> None:
        """Server-sent events: the view's version now and after every change."""
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        preview, seen = self.server.preview, -1
        try:
            while not preview.closing.is_set():
                version = preview.wait(seen, KEEPALIVE)
                self.wfile.write(f"data: {version}\n\n".encode() if version != seen else b": still here\n\n")
                self.wfile.flush()
                seen = version
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the terminal is the editor's, and only cli prints."""


class PreviewServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, preview: Preview, port: int) -> None:
        self.preview = preview
        try:
            super().__init__((HOST, port), Handler)
        except OSError as e:
            raise UtskickError(Problem(f"cannot listen on {HOST}:{port}: {e.strerror} (try another --port)")) from None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}/"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A closed browser tab is not an error worth a traceback; anything else is."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextmanager
def serving(preview: Preview, port: int) -> Iterator[PreviewServer]:
    """Render, watch and serve until the block ends; then stop every thread and the socket."""
    server = PreviewServer(preview, port)
    preview.refresh()
    threads = [threading.Thread(target=preview.watch, name="preview-watch", daemon=True),
               threading.Thread(target=server.serve_forever, args=(0.1,), name="preview-http", daemon=True)]
    for t in threads:
        t.start()
    preview.watching.wait(timeout=5)
    try:
        yield server
    finally:
        preview.close()
        server.shutdown()
        server.server_close()
        for t in threads:
            t.join(timeout=5)
