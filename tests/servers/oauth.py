"""A local OAuth2 token endpoint and token introspection (what Dovecot asks).

Client credentials and refresh tokens (rotated on every use, as Microsoft
does); ``fail_refresh = True`` makes the token endpoint refuse.
"""

from __future__ import annotations

import json
import secrets
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from servers.dovecot import free_port


@dataclass
class TokenServer:
    client_id: str = "mailcase-test"
    client_secret: str = "s3cret"
    username: str = ""
    expires_in: int = 3600
    port: int = field(default_factory=free_port)
    refresh_tokens: set[str] = field(default_factory=set)
    access_tokens: dict[str, str] = field(default_factory=dict)
    issued: int = 0
    fail_refresh: bool = False
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def new_refresh_token(self) -> str:
        token = "rt-" + secrets.token_hex(8)
        self.refresh_tokens.add(token)
        return token

    def start(self) -> TokenServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, code: int, data: dict[str, Any]) -> None:
                body = json.dumps(data).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                if self.path == "/token":
                    owner._token(self, form)
                elif self.path == "/introspect":
                    user = owner.access_tokens.get(form.get("token", ""))
                    self._json(200, {"active": True, "username": user} if user else {"active": False})
                else:
                    self._json(404, {"error": "not_found"})

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def _token(self, h: Any, form: dict[str, str]) -> None:
        if form.get("client_id") != self.client_id:
            h._json(401, {"error": "invalid_client", "error_description": "unknown client"})
            return
        grant = form.get("grant_type")
        rotated = None
        if self.fail_refresh:
            h._json(400, {"error": "invalid_grant", "error_description": "refresh refused for the test"})
            return
        if grant == "client_credentials":
            if form.get("client_secret") != self.client_secret:
                h._json(401, {"error": "invalid_client", "error_description": "bad secret"})
                return
        elif grant == "refresh_token":
            token = form.get("refresh_token", "")
            if token not in self.refresh_tokens:
                h._json(400, {"error": "invalid_grant", "error_description": "refresh token unknown or used"})
                return
            self.refresh_tokens.discard(token)  # rotated: each refresh token works once
            rotated = self.new_refresh_token()
        else:
            h._json(400, {"error": "unsupported_grant_type"})
            return
        access = "at-" + secrets.token_hex(12)
        self.access_tokens[access] = self.username
        self.issued += 1
        data: dict[str, Any] = {"access_token": access, "token_type": "Bearer", "expires_in": self.expires_in}
        if rotated:
            data["refresh_token"] = rotated
        h._json(200, data)
        return

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
