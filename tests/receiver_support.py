"""The real `utskick serve` app under uvicorn on 127.0.0.1, and plain HTTP to it, for the tests."""

from __future__ import annotations

import re
import secrets
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from urllib3.filepost import encode_multipart_formdata

from utskick import receiver
from utskick.project import load_project
from utskick.pull import NONCE_HEADER, SIGNATURE_HEADER, TIME_HEADER, signed_data
from utskick.receiver_store import Store
from utskick.signer import Signer

SECRET = "receiver-test-secret-0123456789"
WAIT = 10.0
PATH = "/avregistrera"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()


@dataclass
class Receiver:
    url: str  # http://127.0.0.1:PORT
    store: Path

    def pending(self) -> list[str]:
        return Store(self.store, 10**6).pending(10**6)

    def http(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> Answer:
        request = urllib.request.Request(self.url + path, data=body, headers=headers or {}, method=method)
        try:
            with urllib.request.urlopen(request, timeout=WAIT) as r:
                return Answer(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read())
        except urllib.error.HTTPError as e:
            return Answer(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())

    def one_click(self, token: str, encoding: str = "urlencoded") -> Answer:
        """What Gmail sends for RFC 8058: the body List-Unsubscribe=One-Click, in either encoding."""
        if encoding == "multipart":
            body, kind = encode_multipart_formdata({"List-Unsubscribe": "One-Click"})
        else:
            body, kind = b"List-Unsubscribe=One-Click", "application/x-www-form-urlencoded"
        return self.http("POST", f"{PATH}?token={token}", body, {"Content-Type": kind})

    def signed(self, method: str, body: bytes = b"", secret: str = SECRET, stamp: int | None = None,
               nonce: str | None = None) -> tuple[bytes, dict[str, str]]:
        """A pull request signed as `unsubscribe --pull` signs it, with any timestamp and nonce."""
        when = str(int(time.time()) if stamp is None else stamp)
        once = nonce or secrets.token_hex(16)
        mac = Signer(secret.encode()).mac("pull", signed_data(method, PATH + "/pull", when, once, body))
        return body, {TIME_HEADER: when, NONCE_HEADER: once, SIGNATURE_HEADER: mac}


def point_at(project: Path, url: str, pull: bool = False) -> None:
    """Make unsubscribe.url of the project's settings `url`/avregistrera?token={token}."""
    settings = project / "newsletter.yaml"
    text = re.sub(r"(?m)^  url: .*$", f"  url: {url}{PATH}?token={{token}}" + ("\n  pull: true" if pull else ""),
                  settings.read_text("utf-8"))
    settings.write_text(text, "utf-8")


@contextmanager
def receiving(folder: Path, limits: receiver.Limits = receiver.Limits(), pull: bool = False) -> Iterator[Receiver]:
    """The app of the settings in `folder`, served by uvicorn in a thread on a free loopback port;
    the folder's unsubscribe.url is pointed at it first (with `pull: true` when asked)."""
    sock = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    point_at(folder, url, pull)
    project = load_project(folder / "newsletter.yaml")
    server = uvicorn.Server(uvicorn.Config(receiver.app_for(project, limits=limits), access_log=False,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the receiver did not start")
        time.sleep(0.01)
    try:
        yield Receiver(url, receiver.store_path(project, None))
    finally:
        server.should_exit = True
        thread.join(WAIT)
        sock.close()
