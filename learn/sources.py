"""The labelled sources the judgement is trained and cross-validated on.

A source is one writer's (or one team's) set of incidents: a JSON Lines file in the incident format
(its lines may name their own `source`, as `calibration.jsonl` does for its two writers), or a folder
of postmortems whose front matter carries the labels. Cross-validation leaves one source out at a time,
so a figure always says how the model does on incidents written by someone it never learned from.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from agent.schemas import Incident
from evals.dataset import DatasetError, load_dataset
from tools.postmortem_format import PostmortemError, read_postmortem

DEFAULT_SOURCES = (
    Path("evals/datasets/paper156.jsonl"),
    Path("evals/datasets/external-a3.jsonl"),
    Path("evals/datasets/calibration.jsonl"),
    Path("evals/datasets/fieldnotes-c.jsonl"),
    Path("evals/datasets/voices-d.jsonl"),
    Path("data/postmortems/history"),
)
# What a postmortem says that was known at triage time: what happened and who was hit, not the fix.
_TRIAGE_SECTIONS = ("summary", "impact")


class SourceError(ValueError):
    """A labelled source cannot be used; the message names the file (and line)."""


@dataclass(frozen=True)
class LabelledCase:
    id: str
    source: str
    incident: Incident
    category: str | None
    subcategory: str | None
    mitigation: str | None

    @property
    def time(self) -> float | None:
        return self.incident.started_at.timestamp() if isinstance(self.incident.started_at, datetime) else None


def _from_jsonl(path: Path) -> list[LabelledCase]:
    try:
        cases = load_dataset(path)
    except (OSError, DatasetError) as exc:
        raise SourceError(str(exc)) from exc
    return [
        LabelledCase(
            id=case.id,
            source=str(case.raw.get("source") or path.stem),
            incident=case.incident,
            category=case.labels["category"],
            subcategory=case.labels["subcategory"],
            mitigation=case.labels["mitigation"],
        )
        for case in cases
    ]


def _from_postmortems(folder: Path) -> list[LabelledCase]:
    out = []
    for path in sorted(folder.rglob("*.md")):
        if path.name.lower() == "readme.md":
            continue
        try:
            postmortem = read_postmortem(path)
        except PostmortemError as exc:
            raise SourceError(str(exc)) from exc
        meta = postmortem.meta
        text = "\n\n".join(postmortem.sections[s] for s in _TRIAGE_SECTIONS if s in postmortem.sections)
        text = re.sub(r"(?<!\n)\n(?!\n)", " ", text)  # lines wrapped mid-sentence are one sentence
        out.append(
            LabelledCase(
                id=meta.id,
                source=folder.name if folder.name != "history" else "postmortems",
                incident=Incident(id=meta.id, title=meta.title, description=text[:50_000], started_at=meta.date),
                category=meta.category,
                subcategory=meta.subcategory,
                mitigation=meta.mitigation,
            )
        )
    return out


def load_sources(paths: tuple[Path, ...] | list[Path]) -> list[LabelledCase]:
    """Every labelled case of every path that exists; ids must be unique across all of them."""
    cases: list[LabelledCase] = []
    seen: dict[str, Path] = {}
    for path in paths:
        loaded = _from_postmortems(path) if path.is_dir() else _from_jsonl(path)
        for case in loaded:
            if case.id in seen:
                raise SourceError(f"{path}: id {case.id!r} is already used by {seen[case.id]}")
            seen[case.id] = path
        cases.extend(loaded)
    if not cases:
        raise SourceError("no labelled cases in " + ", ".join(map(str, paths)))
    return cases


def existing(paths: tuple[Path, ...] | list[Path]) -> list[Path]:
    return [p for p in paths if p.exists()]


def data_hashes(paths: list[Path]) -> dict[str, str]:
    """sha256 per source file (a folder hashes its files in name order): what a model was trained on."""
    out = {}
    for path in paths:
        digest = hashlib.sha256()
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            digest.update(file.name.encode())
            digest.update(file.read_bytes())
        out[str(path)] = digest.hexdigest()[:16]
    return out


def data_card(cases: list[LabelledCase]) -> dict[str, dict[str, object]]:
    """Per source: size and label distribution (the table of docs/datasets.md)."""
    card: dict[str, dict[str, object]] = {}
    for source in sorted({c.source for c in cases}):
        members = [c for c in cases if c.source == source]
        card[source] = {
            "n": len(members),
            "category": dict(sorted(Counter(c.category or "null" for c in members).items())),
            "mitigation": dict(sorted(Counter(c.mitigation or "null" for c in members).items())),
        }
    return card


if __name__ == "__main__":  # a quick look: python -m learn.sources
    print(json.dumps(data_card(load_sources(existing(DEFAULT_SOURCES))), indent=1))
