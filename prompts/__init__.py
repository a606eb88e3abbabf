"""Prompt templates as files, and their one loader.

`{{ name }}` is replaced by a value; `{{> partial }}` includes `_partial.md` from this folder.
Unknown placeholders are an error, so a renamed variable cannot silently ship an empty prompt.
"""

from __future__ import annotations

import hashlib
import re
from functools import cache
from pathlib import Path

PROMPTS_DIR = Path(__file__).parent
_PARTIAL = re.compile(r"\{\{>\s*([a-z0-9_]+)\s*\}\}")
_VALUE = re.compile(r"\{\{\s*([a-z0-9_]+)\s*\}\}")


class PromptError(KeyError):
    pass


@cache
def _raw(name: str) -> str:
    path = PROMPTS_DIR / f"{name}.md"
    if not path.is_file():
        raise PromptError(f"no prompt named {name!r} in {PROMPTS_DIR}")
    text = path.read_text(encoding="utf-8")
    return _PARTIAL.sub(lambda m: _raw(f"_{m.group(1)}"), text)


def render(name: str, **values: str) -> str:
    def substitute(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise PromptError(f"prompt {name!r} needs a value for {key!r}")
        return values[key]

    return _VALUE.sub(substitute, _raw(name))


def prompt_set_digest() -> str:
    """A hash of every prompt file, recorded with eval runs so prompt versions can be compared."""
    digest = hashlib.sha256()
    for path in sorted(PROMPTS_DIR.glob("*.md")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
