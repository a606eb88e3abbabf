"""A local stub of Slack's Web API (and of response_url), so the real slack_sdk client posts over HTTP."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


class FakeSlack:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                if "json" in self.headers.get("Content-Type", ""):
                    body = json.loads(raw or "{}")
                else:
                    body = {k: v[0] for k, v in parse_qs(raw).items()}
                    for key in ("blocks", "attachments"):
                        if isinstance(body.get(key), str):
                            body[key] = json.loads(body[key])
                method = self.path.rsplit("/", 1)[-1]
                fake.calls.append({"method": method, "body": body, "auth": self.headers.get("Authorization")})
                answer = {"ok": True, "ts": "1700000000.000200", "channel": body.get("channel", "C1")}
                if method == "auth.test":
                    answer |= {"user_id": "UBOT", "bot_id": "BBOT", "team_id": "T1"}
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def posts(self, method: str = "chat.postMessage") -> list[dict[str, Any]]:
        return [c["body"] for c in self.calls if c["method"] == method]

    def __enter__(self) -> FakeSlack:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
