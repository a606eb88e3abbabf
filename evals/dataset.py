"""The labeled incident format (docs/datasets.md): load, validate, split, and hide labels from the agent."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from agent.schemas import Incident

Split = Literal["all", "dev", "test"]
_LABEL_KEYS = ("category", "subcategory", "mitigation")
_CATEGORIES = ("A1", "A2", "A3", "A4")
_ACTIONS = ("M1", "M2", "M3", "M4", "M5", "M6")


class DatasetError(ValueError):
    """A dataset line is unusable; the message names the file and line."""


@dataclass(frozen=True)
class Case:
    incident: Incident
    labels: dict[str, str | None]
    timeline: dict[str, Any]
    raw: dict[str, Any]

    @property
    def id(self) -> str:
        return self.incident.id


def split_of(case_id: str) -> Literal["dev", "test"]:
    """Dev/test by id: the trailing number's parity when there is one, else a stable hash."""
    match = re.search(r"(\d+)$", case_id)
    number = int(match.group(1)) if match else int(hashlib.sha256(case_id.encode()).hexdigest(), 16)
    return "dev" if number % 2 else "test"


def parse_case(line: dict[str, Any]) -> Case:
    timeline = line.get("timeline") or {}
    # The agent sees the incident only; labels, timeline beyond its start, resolution and postmortem stay here.
    visible: dict[str, Any] = {k: line[k] for k in ("id", "title", "description", "alert", "signals") if k in line}
    if timeline.get("started_at"):
        visible["started_at"] = timeline["started_at"]
    incident = Incident.model_validate(visible)
    labels_raw = line.get("labels") or {}
    if not isinstance(labels_raw, dict):
        raise ValueError("labels must be an object")
    # "unknown" or an empty string says the same as null: this label is not known, so it is not scored.
    labels = {k: None if labels_raw.get(k) in ("", "unknown") else labels_raw.get(k) for k in _LABEL_KEYS}
    _check_labels(labels)
    return Case(incident=incident, labels=labels, timeline=timeline, raw=line)


@cache
def _subcategories() -> dict[str, str]:
    from agent.rulebook import load_rulebook

    return {s.id: s.category for s in load_rulebook().subcategories.values()}


def _check_labels(labels: dict[str, Any]) -> None:
    """A label outside the taxonomy would be scored (and trained on) as if it meant something: refuse it."""
    category, subcategory, action = labels["category"], labels["subcategory"], labels["mitigation"]
    if category is not None and category not in _CATEGORIES:
        raise ValueError(f"labels.category {category!r} is not one of {', '.join(_CATEGORIES)} (or null)")
    if action is not None and action not in _ACTIONS:
        raise ValueError(f"labels.mitigation {action!r} is not one of {', '.join(_ACTIONS)} (or null)")
    if subcategory is not None:
        owner = _subcategories().get(subcategory)
        if owner is None:
            raise ValueError(f"labels.subcategory {subcategory!r} is not a subcategory of the rulebook (or null)")
        if category is not None and owner != category:
            raise ValueError(f"labels.subcategory {subcategory!r} belongs to {owner}, not to {category}")


def load_dataset(path: Path, split: Split = "all") -> list[Case]:
    cases: list[Case] = []
    seen: set[str] = set()
    with Path(path).open(encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                case = parse_case(json.loads(text))
            except (json.JSONDecodeError, ValidationError, ValueError) as exc:
                raise DatasetError(f"{path}:{number}: {exc}") from exc
            if case.id in seen:
                raise DatasetError(f"{path}:{number}: duplicate id {case.id!r}")
            seen.add(case.id)
            if split == "all" or split_of(case.id) == split:
                cases.append(case)
    return cases


def dataset_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
