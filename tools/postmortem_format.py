"""The postmortem file format (docs/postmortems.md): Markdown with YAML front matter, chunked by section.

A postmortem is one file::

    ---
    id: PM-001
    title: Streaming completions dropped by the gateway idle timer
    date: 2025-03-02            # ISO date or datetime; a date is 00:00 UTC, a naive datetime is UTC
    services: [gateway]
    category: A3                # A1..A4
    subcategory: timeout
    mitigation: M1              # M1..M6
    ttm_hours: 30.5
    incident_id: INC-001        # optional
    ---
    ## Summary
    ...

Parsing is pure (no I/O besides `read_postmortem`); every problem raises `PostmortemError` whose message
starts with the file's name and says what is wrong.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

SECTIONS = ("summary", "impact", "root cause", "mitigation", "follow-ups")
MAX_CHUNK_CHARS = 800
PREAMBLE = "preamble"  # text between the front matter and the first heading, if any

_FRONT = re.compile(r"\A\ufeff?---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n(.*))?\Z", re.S)
_HEADING = re.compile(r"^##[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^[ \t]{0,3}(```|~~~)")
_ALIASES = {
    "root causes": "root cause",
    "rca": "root cause",
    "follow ups": "follow-ups",
    "followups": "follow-ups",
    "follow up": "follow-ups",
    "follow-up": "follow-ups",
    "action items": "follow-ups",
}


class PostmortemError(ValueError):
    """A postmortem file is unusable; the message names the file and the reason."""


class FrontMatter(BaseModel):
    """The metadata of a postmortem. Unknown keys are ignored (teams may keep their own fields)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    id: str = Field(min_length=1, max_length=200)
    title: str = Field(min_length=1, max_length=500)
    date: datetime
    services: list[str]
    category: Literal["A1", "A2", "A3", "A4"]
    subcategory: str = Field(min_length=1, max_length=100)
    mitigation: Literal["M1", "M2", "M3", "M4", "M5", "M6"]
    ttm_hours: float = Field(ge=0)
    incident_id: str | None = Field(default=None, min_length=1, max_length=200)

    @field_validator("date", mode="before")
    @classmethod
    def _date_or_datetime(cls, value: Any) -> Any:
        if isinstance(value, date) and not isinstance(value, datetime):
            return datetime.combine(value, time(0), tzinfo=UTC)
        return value

    @field_validator("date")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @field_validator("ttm_hours", mode="before")
    @classmethod
    def _a_real_number(cls, value: Any) -> Any:
        if isinstance(value, bool) or (isinstance(value, float) and not math.isfinite(value)):
            raise ValueError(f"must be a finite number of hours, got {value!r}")
        return value

    @field_validator("services", mode="before")
    @classmethod
    def _a_list(cls, value: Any) -> Any:
        if not isinstance(value, list):
            raise ValueError(f"must be a list, e.g. [gateway, llama3-70b], got {value!r}")
        for service in value:
            if not isinstance(service, str) or not service.strip() or "," in service:
                raise ValueError(f"every service must be a non-empty name without commas, got {service!r}")
        return [service.strip() for service in value]

    def metadata(self) -> dict[str, Any]:
        """The flat metadata every chunk carries (Chroma and the lexical index store the same)."""
        return {
            "postmortem_id": self.id,
            "incident_id": self.incident_id or "",
            "title": self.title,
            "date": format_date(self.date),
            "date_ts": self.date.timestamp(),
            "category": self.category,
            "subcategory": self.subcategory,
            "mitigation": self.mitigation,
            "ttm_hours": self.ttm_hours,
            "services": list(self.services),
        }


def format_date(moment: datetime) -> str:
    """A date when the postmortem gave one (midnight UTC), else the full ISO datetime in UTC."""
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.date().isoformat() if moment.time() == time(0) else moment.isoformat()


@dataclass(frozen=True)
class Chunk:
    """A piece of one section; `text` is the section's own text, `indexed_text` what is embedded."""

    meta: FrontMatter
    section: str
    ordinal: int  # position within the section
    number: int  # position within the postmortem
    text: str

    @property
    def postmortem_id(self) -> str:
        return self.meta.id

    @property
    def chunk_id(self) -> str:
        # Unique across postmortems: the suffix after the last ':' is always an integer.
        return f"{self.meta.id}:{self.number}"

    @property
    def indexed_text(self) -> str:
        return f"{self.meta.title}. {self.text}"

    def metadata(self) -> dict[str, Any]:
        return {**self.meta.metadata(), "chunk_id": self.chunk_id, "section": self.section, "ordinal": self.ordinal}


@dataclass(frozen=True)
class Postmortem:
    meta: FrontMatter
    sections: dict[str, str]  # canonical section name -> text, in file order
    digest: str  # sha256 of the file's text: what ingestion compares to skip unchanged files
    path: str

    def chunks(self) -> list[Chunk]:
        out: list[Chunk] = []
        for section, body in self.sections.items():
            for ordinal, piece in enumerate(split_text(body)):
                out.append(Chunk(self.meta, section, ordinal, len(out), piece))
        return out


def split_text(body: str, limit: int = MAX_CHUNK_CHARS) -> list[str]:
    """Pieces of at most `limit` characters made of whole paragraphs; a paragraph longer than the
    limit on its own is cut at word boundaries (or hard, for a single longer word)."""
    pieces: list[str] = []
    current = ""
    for paragraph in (p.strip() for p in re.split(r"\n[ \t]*\n", body)):
        if not paragraph:
            continue
        while len(paragraph) > limit:
            cut = paragraph.rfind(" ", 0, limit + 1)
            cut = cut if cut > 0 else limit
            if current:
                pieces.append(current)
                current = ""
            pieces.append(paragraph[:cut].rstrip())
            paragraph = paragraph[cut:].lstrip()
        if not paragraph:
            continue
        if current and len(current) + 2 + len(paragraph) > limit:
            pieces.append(current)
            current = ""
        current = f"{current}\n\n{paragraph}" if current else paragraph
    if current:
        pieces.append(current)
    return pieces


def canonical_section(heading: str) -> str:
    name = re.sub(r"[\s_]+", " ", heading.strip().rstrip(":").lower())
    return _ALIASES.get(name, name)


def _sections(body: str) -> dict[str, str]:
    sections: dict[str, list[str]] = {}
    current = PREAMBLE
    lines: list[str] = []
    fence: str | None = None

    def close() -> None:
        text = "\n".join(lines).strip()
        if text:
            sections.setdefault(current, []).append(text)

    for line in body.splitlines():
        opened = _FENCE.match(line)
        if opened and (fence is None or opened.group(1) == fence):
            fence = None if fence else opened.group(1)
        heading = None if fence else _HEADING.match(line)
        if heading:
            close()
            current, lines = canonical_section(heading.group(1)), []
        else:
            lines.append(line)
    close()
    return {name: "\n\n".join(parts) for name, parts in sections.items()}


def parse_postmortem(text: str, path: str = "<text>") -> Postmortem:
    match = _FRONT.match(text)
    if not match:
        raise PostmortemError(f"{path}: no YAML front matter (a '---' line, the fields, a '---' line) at the top")
    try:
        raw = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        raise PostmortemError(f"{path}: front matter is not valid YAML: {' '.join(str(exc).split())}") from exc
    if not isinstance(raw, dict):
        raise PostmortemError(f"{path}: front matter must be a mapping of fields, got {type(raw).__name__}")
    try:
        meta = FrontMatter.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(_problem(error) for error in exc.errors())
        raise PostmortemError(f"{path}: {problems}") from exc
    sections = _sections(match.group(2) or "")
    if not any(name != PREAMBLE for name in sections):
        raise PostmortemError(f"{path}: no '## ' section with text (expected {', '.join(SECTIONS)})")
    return Postmortem(meta, sections, hashlib.sha256(text.encode("utf-8")).hexdigest(), path)


def _problem(error: Any) -> str:
    field = ".".join(map(str, error["loc"])) or "front matter"
    if error["type"] == "missing":
        return f"{field}: required field missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "value_error" or "input" not in error:
        return f"{field}: {message}"
    return f"{field}: {message} (got {error['input']!r})"


def read_postmortem(path: Path) -> Postmortem:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PostmortemError(f"{path}: cannot read as UTF-8 text: {exc}") from exc
    return parse_postmortem(text, str(path))
