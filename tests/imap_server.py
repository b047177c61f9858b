"""A real Dovecot (Debian's dovecot-imapd) on 127.0.0.1 for the inbox tests.

Each server gets a throwaway configuration, user, maildir and certificate in a temp folder, a
random free port and implicit TLS; a password user and an OAuth2 passdb whose introspection
endpoint is a small HTTP server here, so XOAUTH2 is checked end to end. Messages are placed
with IMAP APPEND, as a mail server would deliver them.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, quote

import pytest
from imapclient import IMAPClient

from smtp_server import free_port, self_signed

DOVECOT = "/usr/sbin/dovecot"
USER = "nyhetsbrev@sjolandet.example"
PASSWORD = "hemligt-lösenord"
TOKEN = "good-access-token"
WAIT = 10.0

# An older server: no MOVE (RFC 6851), so the COPY path is taken, and every folder under "INBOX."
# as Courier and Cyrus have it.
NO_MOVE = ("IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT THREAD=REFERENCES MULTIAPPEND "
           "UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH "
           "LITERAL+")


class Introspection(BaseHTTPRequestHandler):
    """The OAuth2 server's token introspection (RFC 7662), as Dovecot's oauth2 passdb asks it."""

    tokens: dict[str, str] = {}
    asked: list[str] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        token = parse_qs(body).get("token", [""])[0]
        self.asked.append(token)
        user = self.tokens.get(token)
        answer = {"active": True, "username": user} if user else {"active": False}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Dovecot:
    def __init__(self, move: bool = True) -> None:
        # Not in pytest's private temp folder: Dovecot's unprivileged processes must enter this one.
        self.folder = Path(tempfile.mkdtemp(prefix="utskick-dovecot-"))
        self.folder.chmod(0o755)
        self.maildir = self.folder / "mail"
        self.maildir.mkdir()
        self.port = free_port()
        self.starttls_port = free_port()
        self.cafile, _ = self_signed(self.folder)
        self.move = move
        self.asked: list[str] = []

    @property
    def url(self) -> str:
        return f"imaps://{quote(USER)}@127.0.0.1:{self.port}/INBOX"

    def client(self) -> IMAPClient:
        """A client of our own, to place messages and look at the mailbox as a mail app would."""
        client = IMAPClient("127.0.0.1", self.port, ssl_context=ssl.create_default_context(cafile=str(self.cafile)),
                            timeout=WAIT)
        client.plain_login(USER, PASSWORD)
        return client

    def append(self, *messages: bytes, folder: str = "INBOX") -> None:
        with self.client() as c:
            if not c.folder_exists(folder):
                c.create_folder(folder)
            for raw in messages:
                c.append(folder, raw)

    def contents(self, folder: str) -> list[bytes]:
        with self.client() as c:
            if not c.folder_exists(folder):
                return []
            c.select_folder(folder, readonly=True)
            found = c.fetch(c.search("UNDELETED"), ["BODY.PEEK[]"])
            return [found[uid][b"BODY[]"] for uid in sorted(found)]

    def flags(self, folder: str = "INBOX") -> list[tuple[bytes, ...]]:
        """Each message's flags but \\Recent (which only says whether a session has seen it yet)."""
        with self.client() as c:
            c.select_folder(folder, readonly=True)
            return [tuple(f for f in flags if f != b"\\Recent") for _, flags in sorted(c.get_flags(c.search()).items())]

    def _config(self, introspection_port: int) -> str:
        d = self.folder
        root = os.geteuid() == 0
        me = pwd.getpwuid(os.geteuid()).pw_name
        # Dovecot runs its login processes unprivileged and refuses uid 0 for mail: as root, the
        # Debian package's own users and nobody's maildir; otherwise everything as ourselves.
        login, internal = ("dovenull", "dovecot") if root else (me, me)
        mail_user = pwd.getpwnam("nobody") if root else pwd.getpwuid(os.geteuid())
        os.chown(self.maildir, mail_user.pw_uid, mail_user.pw_gid)
        (d / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
        (d / "oauth2.conf.ext").write_text(
            f"introspection_mode = post\nintrospection_url = http://127.0.0.1:{introspection_port}/introspect\n"
            "username_attribute = username\nactive_attribute = active\nactive_value = true\nforce_introspection = yes\n")
        capability = "" if self.move else (f"imap_capability = {NO_MOVE}\n"
                                           "namespace inbox {\n  inbox = yes\n  prefix = INBOX.\n  separator = .\n}\n")
        return f"""
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{self.cafile}
ssl_key = <{d}/relay-key.pem
default_internal_user = {internal}
default_internal_group = {grp.getgrgid(pwd.getpwnam(internal).pw_gid).gr_name}
default_login_user = {login}
first_valid_uid = 1
auth_failure_delay = 0
# No growing pause after the tests' refused sign-ins (the penalty skips trusted networks).
login_trusted_networks = 127.0.0.1/32
auth_mechanisms = plain login xoauth2
mail_location = maildir:{self.maildir}/%u
{capability}
passdb {{
  driver = oauth2
  mechanisms = xoauth2
  args = {d}/oauth2.conf.ext
}}
passdb {{
  driver = passwd-file
  mechanisms = plain login
  args = scheme=PLAIN username_format=%u {d}/passwd
}}
userdb {{
  driver = static
  args = uid={mail_user.pw_uid} gid={mail_user.pw_gid} home={self.maildir}/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    port = {self.starttls_port}
  }}
  inet_listener imaps {{
    port = {self.port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  inet_listener http {{
    port = 0
  }}
}}
"""

    @contextmanager
    def running(self) -> Iterator[Dovecot]:
        tokens = {TOKEN: USER}
        handler = type("Handler", (Introspection,), {"tokens": tokens, "asked": self.asked})
        http = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=http.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        config = self.folder / "dovecot.conf"
        config.write_text(self._config(int(http.server_address[1])))
        process = subprocess.Popen([DOVECOT, "-F", "-c", str(config)], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT)
        try:
            self._wait_until_ready(process)
            yield self
        finally:
            process.terminate()
            try:
                process.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=WAIT)
            http.shutdown()
            http.server_close()
            shutil.rmtree(self.folder, ignore_errors=True)

    def _wait_until_ready(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                out = process.stdout.read().decode() if process.stdout else ""
                log = self.folder / "dovecot.log"
                raise RuntimeError(f"dovecot stopped: {out}{log.read_text() if log.exists() else ''}")
            try:
                self.client().logout()
                return
            except (OSError, ssl.SSLError):
                time.sleep(0.05)
        raise RuntimeError("dovecot did not answer within 10 s")


@contextmanager
def dovecot(move: bool = True) -> Iterator[Dovecot]:
    if not Path(DOVECOT).exists():
        pytest.skip("needs Dovecot (Debian package dovecot-imapd)")
    with Dovecot(move).running() as server:
        yield server
