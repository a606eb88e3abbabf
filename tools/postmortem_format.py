"""The postmortem file format (docs/postmortems.md): Markdown with YAML front matter, chunked by section."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field, ValidationError

SECTIONS = ("summary", "impact", "root cause", "mitigation", "follow-ups")
MAX_CHUNK_CHARS = 800
_FRONT = re.compile(r"\A---\s*\n(.*?)\n---\s*\n(.*)\Z", re.S)
_HEADING = re.compile(r"^##\s+(.+?)\s*$", re.M)


class PostmortemError(ValueError):
    """A postmortem file is unusable; the message names the file and the reason."""


class FrontMatter(BaseModel):
    id: str = Field(min_length=1, max_length=200)
    title: str = Field(min_length=1)
    date: datetime
    services: list[str] = Field(default_factory=list)
    category: Literal["A1", "A2", "A3", "A4"]
    subcategory: str = Field(min_length=1)
    mitigation: Literal["M1", "M2", "M3", "M4", "M5", "M6"]
    ttm_hours: float | None = Field(default=None, ge=0)
    incident_id: str | None = None


@dataclass(frozen=True)
class Chunk:
    postmortem_id: str
    section: str
    ordinal: int
    text: str


@dataclass(frozen=True)
class Postmortem:
    meta: FrontMatter
    sections: dict[str, str]
    digest: str
    path: str

    def chunks(self) -> list[Chunk]:
        out: list[Chunk] = []
        header = f"{self.meta.title}. "
        for section, body in self.sections.items():
            for ordinal, piece in enumerate(_split(body)):
                out.append(Chunk(self.meta.id, section, ordinal, header + piece))
        return out


def _split(body: str) -> list[str]:
    """Paragraph-aligned pieces of at most MAX_CHUNK_CHARS (a longer paragraph is cut at words)."""
    pieces: list[str] = []
    current = ""
    for paragraph in [p.strip() for p in re.split(r"\n\s*\n", body) if p.strip()]:
        while len(paragraph) > MAX_CHUNK_CHARS:
            cut = paragraph.rfind(" ", 0, MAX_CHUNK_CHARS)
            cut = cut if cut > 0 else MAX_CHUNK_CHARS
            pieces.append(paragraph[:cut])
            paragraph = paragraph[cut:].strip()
        if current and len(current) + len(paragraph) + 2 > MAX_CHUNK_CHARS:
            pieces.append(current)
            current = ""
        current = f"{current}\n\n{paragraph}" if current else paragraph
    if current:
        pieces.append(current)
    return pieces


def parse_postmortem(text: str, path: str = "<text>") -> Postmortem:
    match = _FRONT.match(text)
    if not match:
        raise PostmortemError(f"{path}: no YAML front matter between '---' lines at the top")
    try:
        raw = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        raise PostmortemError(f"{path}: front matter is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise PostmortemError(f"{path}: front matter must be a mapping of fields")
    if isinstance(raw.get("date"), date) and not isinstance(raw["date"], datetime):
        raw["date"] = datetime(raw["date"].year, raw["date"].month, raw["date"].day)
    try:
        meta = FrontMatter.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise PostmortemError(f"{path}: {problems}") from exc
    body = match.group(2)
    headings = list(_HEADING.finditer(body))
    sections: dict[str, str] = {}
    for i, heading in enumerate(headings):
        end = headings[i + 1].start() if i + 1 < len(headings) else len(body)
        content = body[heading.end() : end].strip()
        if content:
            sections[heading.group(1).strip().lower()] = content
    if not sections:
        raise PostmortemError(f"{path}: no '## Section' headings with text (expected {', '.join(SECTIONS)})")
    return Postmortem(meta, sections, hashlib.sha256(text.encode()).hexdigest(), path)


def read_postmortem(path: Path) -> Postmortem:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PostmortemError(f"{path}: cannot read: {exc}") from exc
    return parse_postmortem(text, str(path))
