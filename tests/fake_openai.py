"""A scripted OpenAI-compatible HTTP server on loopback, so the real `openai` client code runs in tests.

Each request to /v1/chat/completions takes the next scripted behaviour:
  ("json", obj)     answer with obj serialised as the message content
  ("raw", text)     answer with text as the content (malformed output)
  ("status", code)  answer with an HTTP error
  ("sleep", secs)   wait before answering (a timeout, for a client with a shorter timeout)
  ("slow_status", (secs, code))  wait, then answer with an HTTP error
  ("tool_calls", [(name, arguments), ...])  an assistant message asking for these function calls (several
                    in one turn are parallel calls); arguments a dict (sent as JSON) or a raw string
  ("text", text)    a plain assistant answer (no tool calls), e.g. the end of a tool loop
  ("runaway", None) a model that never stops: without `max_tokens` it keeps generating (the request
                    hangs for a minute); with it, the server stops there (`finish_reason: length`)
With an empty script, `responder(request_body)` (when given) picks the behaviour: a scripted model.
With `json_schema=False` it refuses `response_format: json_schema` as llama-cpp-python's server does
(a 500 naming the field), before the script is consulted. With `null_content=False` it refuses, as
llama-cpp-python's server does, a request whose messages carry `"content": null` (an echoed tool-call
turn written that way) with a 500.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# What llama-cpp-python's server (0.3) answers to `response_format: {"type": "json_schema", ...}`.
LLAMA_CPP_REFUSAL = {
    "error": {
        "message": "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
        "'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema', "
        "'ctx': {'expected': \"'text' or 'json_object'\"}}",
        "type": "internal_server_error",
        "param": None,
        "code": None,
    }
}

# The 500 llama-cpp-python's server (0.3.36, checked live on 2026-12-03) gives an assistant turn whose
# content is null: its pydantic error lists one line per message type it tried (7 in all); this keeps
# the line that matters, as the server words it.
LLAMA_CPP_NULL_CONTENT = {
    "error": {
        "message": "7 validation errors:\n  {'type': 'string_type', "
        "'loc': ('body', 'messages', 1, 'ChatCompletionRequestAssistantMessage', 'content'), "
        "'msg': 'Input should be a valid string', 'input': None}\n  ...",
        "type": "internal_server_error",
        "param": None,
        "code": None,
    }
}


class FakeOpenAI:
    def __init__(
        self,
        responder: Callable[[dict[str, Any]], tuple[str, Any]] | None = None,
        *,
        json_schema: bool = True,
        null_content: bool = True,
    ) -> None:
        self.script: deque[tuple[str, Any]] = deque()
        self.requests: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                if not json_schema and (body.get("response_format") or {}).get("type") == "json_schema":
                    self._send(500, LLAMA_CPP_REFUSAL)
                    return
                if not null_content and any(m.get("content", "") is None for m in body.get("messages", [])):
                    self._send(500, LLAMA_CPP_NULL_CONTENT)
                    return
                if fake.script:
                    kind, value = fake.script.popleft()
                else:
                    kind, value = responder(body) if responder else ("status", 599)
                if kind == "sleep":
                    time.sleep(value)
                    kind, value = "json", {}
                if kind == "slow_status":
                    time.sleep(value[0])
                    kind, value = "status", value[1]
                finish, completion = "stop", 20
                if kind == "runaway":
                    if not body.get("max_tokens"):
                        time.sleep(60)
                    completion = int(body.get("max_tokens") or 0)
                    kind, value, finish = "raw", '{"category": "A3", "rationale": "' + "and " * completion, "length"
                if kind == "status":
                    self._send(value, {"error": {"message": "scripted failure", "type": "server_error"}})
                    return
                message: dict[str, Any] = {"role": "assistant", "content": None}
                if kind == "tool_calls":
                    finish = "tool_calls"
                    message["tool_calls"] = [
                        {
                            "id": f"call_{len(fake.requests)}_{i}",
                            "type": "function",
                            "function": {
                                "name": name,
                                "arguments": args if isinstance(args, str) else json.dumps(args),
                            },
                        }
                        for i, (name, args) in enumerate(value)
                    ]
                else:
                    message["content"] = json.dumps(value) if kind == "json" else value
                self._send(
                    200,
                    {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body["model"],
                        "choices": [{"index": 0, "finish_reason": finish, "message": message}],
                        "usage": {
                            "prompt_tokens": 100,
                            "completion_tokens": completion,
                            "total_tokens": 100 + completion,
                        },
                    },
                )

            def _send(self, code: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up
                    self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
