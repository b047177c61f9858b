"""A stand-in for the Microsoft identity platform on 127.0.0.1, over HTTPS.

It serves what msal asks of a tenant (OpenID discovery, the token endpoint for client
credentials, device codes and refresh tokens, and the device-code endpoint), so msal's real
flows run against it, and it remembers every token it issued and until when it is valid, so an
SMTP stand-in can refuse an expired or unknown one as Exchange Online would.
"""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs

import jwt
from cryptography import x509

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
MAILBOX = "karin.holmqvist@sjolandet.example"


def b64url(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@dataclass
class Identity:
    """One tenant with one app; `certificate` (PEM) makes it check signed client assertions."""

    tenant: str = "sjolandet.example"
    client_id: str = "0f3c2a9e-6d1b-4c8e-9a57-2b1d4e6f8a10"
    client_secret: str = "klienthemlighet-Abc~123"
    certificate: Path | None = None
    expires_in: int = 3600
    issued: dict[str, float] = field(default_factory=dict)
    refresh_tokens: set[str] = field(default_factory=set)
    grants: list[str] = field(default_factory=list)
    scopes: list[str] = field(default_factory=list)
    polled: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    base: str = ""

    def valid(self, token: str) -> bool:
        with self.lock:
            return self.issued.get(token, 0.0) > time.time()

    def secrets_issued(self) -> list[str]:
        """Every access and refresh token handed out, and the client secret: none may leak."""
        with self.lock:
            return [*self.issued, *self.refresh_tokens, self.client_secret]

    def _access(self, user: bool) -> dict[str, Any]:
        token = "eyJ0eXAi." + secrets.token_urlsafe(24)
        with self.lock:
            self.issued[token] = time.time() + self.expires_in
        reply: dict[str, Any] = {"token_type": "Bearer", "expires_in": self.expires_in, "access_token": token}
        if user:
            refresh = "M.R3_" + secrets.token_urlsafe(24)
            with self.lock:
                self.refresh_tokens.add(refresh)
            now = int(time.time())
            claims = {"iss": f"{self.base}/{self.tenant}/v2.0", "sub": "karin-sub", "aud": self.client_id,
                      "exp": now + 3600, "iat": now, "oid": "karin-oid", "tid": "tenant-id",
                      "preferred_username": MAILBOX}
            reply.update(refresh_token=refresh, scope=" ".join(self.scopes[-1:]),
                         id_token=f"{b64url({'alg': 'none', 'typ': 'JWT'})}.{b64url(claims)}.",
                         client_info=b64url({"uid": "karin-oid", "utid": "tenant-id"}))
        return reply

    def _client_ok(self, form: dict[str, str]) -> bool:
        if form.get("client_id") != self.client_id:
            return False
        if self.certificate is None:
            return form.get("client_secret") == self.client_secret
        public_key = x509.load_pem_x509_certificate(self.certificate.read_bytes()).public_key()
        try:
            claims = jwt.decode(form.get("client_assertion", ""), public_key,  # type: ignore[arg-type]
                                algorithms=["RS256", "PS256"], audience=f"{self.base}/{self.tenant}/oauth2/v2.0/token")
        except jwt.PyJWTError:
            return False
        return bool(claims.get("iss") == self.client_id)

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        grant = form.get("grant_type", "")
        with self.lock:
            self.grants.append(grant)
            self.scopes.append(form.get("scope", ""))
        if grant == "client_credentials":
            if not self._client_ok(form):
                return 401, {"error": "invalid_client", "error_description":
                             "AADSTS7000215: Invalid client secret provided. Trace ID: 1 Correlation ID: 2"}
            return 200, self._access(user=False)
        if grant == DEVICE_GRANT:
            code = form.get("device_code", "")
            if code not in self.polled:
                self.polled.add(code)
                return 400, {"error": "authorization_pending", "error_description": "AADSTS70016: pending"}
            return 200, self._access(user=True)
        if grant == "refresh_token":
            with self.lock:
                known = form.get("refresh_token", "") in self.refresh_tokens
            if not known:
                return 400, {"error": "invalid_grant", "error_description": "AADSTS70008: The refresh token has expired"}
            return 200, self._access(user=True)
        return 400, {"error": "unsupported_grant_type"}

    def reply(self, method: str, path: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        tenant, _, rest = path.strip("/").partition("/")
        if tenant != self.tenant:
            return 400, {"error": "invalid_tenant", "error_description": f"AADSTS90002: Tenant '{tenant}' not found."}
        root = f"{self.base}/{self.tenant}"
        if method == "GET" and rest == "v2.0/.well-known/openid-configuration":
            return 200, {"issuer": f"{root}/v2.0", "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
                         "token_endpoint": f"{root}/oauth2/v2.0/token",
                         "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode"}
        if method == "POST" and rest == "oauth2/v2.0/token":
            return self.token(form)
        if method == "POST" and rest == "oauth2/v2.0/devicecode":
            with self.lock:
                self.scopes.append(form.get("scope", ""))
            return 200, {"device_code": secrets.token_urlsafe(16), "user_code": "GXK7-PQ2M",
                         "verification_uri": "https://microsoft.com/devicelogin", "expires_in": 60, "interval": 1,
                         "message": "To sign in, open https://microsoft.com/devicelogin and enter GXK7-PQ2M."}
        return 404, {"error": "not_found"}


@contextmanager
def serving(identity: Identity, tls: ssl.SSLContext) -> Iterator[Identity]:
    """Serves `identity` on a random port until the block ends; `identity.base` is its address."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            form = {k: v[-1] for k, v in parse_qs(body).items()}
            status, data = identity.reply(method, self.path.split("?")[0], form)
            raw = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self) -> None:
            self._answer("GET")

        def do_POST(self) -> None:
            self._answer("POST")

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    identity.base = f"https://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield identity
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
