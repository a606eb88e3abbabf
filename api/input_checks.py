"""What every door does with a body it has authenticated, before any model sees it: decode it as UTF-8,
parse it as JSON (or a form), bound its nesting, and refuse text no database can store.

PostgreSQL refuses a NUL character in any text column (and `\\u0000` in JSONB), and neither SQLite nor
PostgreSQL can encode a lone UTF-16 surrogate (`"\\ud800"` is valid JSON, not valid UTF-8). Such text is
*rejected* with a 422 naming the field, never silently altered: an alert's id or label that we changed
would no longer deduplicate against the sender's, and nothing legitimate carries those characters.
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any, TypeVar

from fastapi import HTTPException, status
from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)

MAX_DEPTH = 32  # Alertmanager, PagerDuty and incident bodies are < 6 deep; a Teams activity < 12
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class BadInput(HTTPException):
    """A 4xx with a reason a sender can act on."""

    def __init__(self, code: int, reason: str, field: str | None = None) -> None:
        detail: dict[str, Any] = {"reason": reason}
        if field is not None:
            detail["field"] = field
        super().__init__(code, detail)


def decode_utf8(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(status.HTTP_400_BAD_REQUEST, f"body is not UTF-8 (byte {exc.start})") from None


def _where(path: list[str | int]) -> str:
    return ".".join(str(p) for p in path) or "body"


def check_storable(value: Any, path: list[str | int] | None = None, max_depth: int = MAX_DEPTH) -> None:
    """422 naming the first field (or key) holding text a database refuses, or nesting deeper than
    `max_depth`. Iterative, so no input can exhaust the interpreter's stack."""
    stack: list[tuple[Any, list[str | int]]] = [(value, list(path or []))]
    while stack:
        item, where = stack.pop()
        if len(where) > max_depth:
            raise BadInput(
                status.HTTP_422_UNPROCESSABLE_CONTENT, f"nested deeper than {max_depth} levels", _where(where)
            )
        if isinstance(item, str):
            if _UNSTORABLE.search(item):
                raise BadInput(
                    status.HTTP_422_UNPROCESSABLE_CONTENT,
                    f"{_where(where)} holds a NUL or an unpaired surrogate character, which cannot be stored",
                    _where(where),
                )
        elif isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and _UNSTORABLE.search(key):
                    raise BadInput(
                        status.HTTP_422_UNPROCESSABLE_CONTENT,
                        f"a key of {_where(where)} holds a NUL or an unpaired surrogate character",
                        _where(where),
                    )
                stack.append((child, [*where, key]))
        elif isinstance(item, list):
            stack.extend((child, [*where, i]) for i, child in enumerate(item))


def parse_json(body: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """The body as JSON: 400 when it is not UTF-8 or not JSON, 422 when it nests too deep or holds text
    that cannot be stored."""
    text = decode_utf8(body)
    try:
        value = json.loads(text)
    except RecursionError:  # the C parser gives up near the interpreter's recursion limit
        raise BadInput(status.HTTP_422_UNPROCESSABLE_CONTENT, f"nested deeper than {max_depth} levels") from None
    except ValueError as exc:
        raise BadInput(status.HTTP_400_BAD_REQUEST, f"body is not JSON: {exc}") from None
    check_storable(value, max_depth=max_depth)
    return value


def check_text(value: str, field: str) -> None:
    """A path segment or query value that will reach a query."""
    if _UNSTORABLE.search(value):
        raise BadInput(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"{field} holds a NUL or an unpaired surrogate character, which cannot be stored",
            field,
        )


# In JSON a NUL or a surrogate can only arrive escaped (raw, it is invalid JSON or invalid UTF-8), so
# a body without these escapes needs no walk: the common case costs one regex scan.
_SUSPECT = re.compile(r"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")


def parse_model(body: bytes, model: type[M]) -> M:
    """The body as `model`: 400 when it is not UTF-8, 422 (BadInput, or the model's ValidationError)
    when it is not the model, nests too deep or holds text that cannot be stored."""
    text = decode_utf8(body)
    if _SUSPECT.search(text):
        with contextlib.suppress(ValueError, RecursionError):  # not JSON, or absurdly deep: the model says so
            check_storable(json.loads(text))
    return model.model_validate_json(text)
