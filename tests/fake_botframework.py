"""A local stand-in for the Bot Framework's edges: the OpenID metadata and signing keys the framework
validates inbound tokens against, and the connector service replies are posted to. The real botbuilder
code runs; only Microsoft's servers are replaced, at the network boundary."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from botframework.connector.auth import AppCredentials, ServiceClientCredentialsFactory
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ISSUER = "https://api.botframework.com"


class FakeBotFramework:
    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.replies: list[dict[str, Any]] = []
        self.updates: list[dict[str, Any]] = []  # PUT: a message (a card) replaced in place
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/openid":
                    self._json(
                        {
                            "issuer": ISSUER,
                            "jwks_uri": f"{fake.url}/keys",
                            "id_token_signing_alg_values_supported": ["RS256"],
                        }
                    )
                else:
                    jwk = json.loads(RSAAlgorithm.to_jwk(fake.key.public_key()))
                    self._json({"keys": [{**jwk, "kid": "test-key", "use": "sig", "endorsements": ["msteams"]}]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                fake.replies.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                self._json({"id": f"reply-{len(fake.replies)}"})

            def do_PUT(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                fake.updates.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                self._json({"id": self.path.rsplit("/", 1)[-1]})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def token(self, app_id: str, *, key: Any = None, issuer: str = ISSUER) -> str:
        now = int(time.time())
        claims = {"iss": issuer, "aud": app_id, "nbf": now - 10, "exp": now + 3600, "serviceurl": self.url}
        return jwt.encode(claims, key or self.key, algorithm="RS256", headers={"kid": "test-key"})

    def __enter__(self) -> FakeBotFramework:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


class _StaticCredentials(AppCredentials):  # type: ignore[misc]
    def get_access_token(self, force_refresh: bool = False) -> str:
        return "outbound-test-token"


class StaticTokenCredentials(ServiceClientCredentialsFactory):  # type: ignore[misc]
    """Outbound tokens come from Microsoft's login service in production; here a fixed one."""

    def __init__(self, app_id: str) -> None:
        self.app_id = app_id

    async def is_valid_app_id(self, app_id: str) -> bool:
        return app_id == self.app_id

    async def is_authentication_disabled(self) -> bool:
        return False

    async def create_credentials(
        self, app_id: str, oauth_scope: str, login_endpoint: str, validate_authority: bool
    ) -> Any:
        return _StaticCredentials(app_id=app_id, oauth_scope=oauth_scope)
