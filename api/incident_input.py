"""What `mitigate triage` accepts: an incident as JSON or YAML, an Alertmanager webhook payload, or
plain text — from a file or stdin. A missing id is generated; a key the format does not have is refused
with the closest key it does have, so a typo never silently drops what it held."""

from __future__ import annotations

import difflib
import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

FORMAT_DOC = "docs/datasets.md"
INCIDENT_KEYS = ("id", "title", "description", "alert", "signals", "started_at")
# Keys of a labelled dataset line: accepted and never shown to the agent (docs/datasets.md).
DATASET_KEYS = ("labels", "timeline", "resolution", "rationale", "source", "postmortem", "split")
ALERT_KEYS = ("status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint")


class IncidentInputError(ValueError):
    """The input cannot be an incident; the message names the problem and the format doc."""


@dataclass
class ParsedIncident:
    incident: Any  # agent.schemas.Incident
    payload: dict[str, Any]
    notes: list[str] = field(default_factory=list)  # said on stderr: a generated id, the form read


def _generated_id() -> str:
    return f"cli-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def _misspelled(keys: list[str], known: tuple[str, ...], where: str) -> list[str]:
    problems = []
    for key in keys:
        if key in known:
            continue
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"
        problems.append(f"unknown key {where + key!r}{hint}")
    return problems


def _from_text(text: str) -> dict[str, Any]:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    title = lines[0][:200] if lines else ""
    return {"title": title, "description": text.strip()}


def _structured(text: str, source: str) -> Any:
    """A JSON or YAML document, or None when the text is prose."""
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise IncidentInputError(f"{source} is not JSON: {exc} (the format: {FORMAT_DOC})") from exc
    import yaml

    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    # A YAML mapping needs a key of the format, or one close to it (a typo, refused below with the
    # right name); prose with a colon in it ("HTTP 408 on streams: cut off") is still prose.
    known = (*INCIDENT_KEYS, *DATASET_KEYS, "version")
    if isinstance(document, dict) and any(
        isinstance(k, str) and re.fullmatch(r"[A-Za-z_]\w*", k) and difflib.get_close_matches(k, known, 1, 0.75)
        for k in document
    ):
        return document
    return None


def _from_alertmanager(document: dict[str, Any], source: str) -> dict[str, Any]:
    from pydantic import ValidationError

    from api.alertmanager import AlertmanagerPayload, incident_from_alert

    try:
        payload = AlertmanagerPayload.model_validate(document)
    except ValidationError as exc:
        raise IncidentInputError(f"{source} is not a valid Alertmanager payload: {_problems(exc)}") from exc
    firing = [a for a in payload.alerts if a.status == "firing"] or payload.alerts
    incident: dict[str, Any] = incident_from_alert(firing[0]).model_dump(mode="json")
    return incident


def _problems(exc: Any) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'incident'}: {e['msg']}" for e in exc.errors())


def parse_incident(text: str, source: str) -> ParsedIncident:
    """An incident from what a person typed or pasted; `IncidentInputError` says what is wrong."""
    from pydantic import ValidationError

    from agent.schemas import Incident

    if not text.strip():
        raise IncidentInputError(f"{source} is empty: give an incident as JSON, YAML or plain text ({FORMAT_DOC})")
    document = _structured(text, source)
    notes: list[str] = []
    if document is None:
        payload, notes = _from_text(text), ["read as plain text: the first line is the title"]
    elif isinstance(document, dict) and document.get("version") == "4" and "alerts" in document:
        payload, notes = _from_alertmanager(document, source), ["read as an Alertmanager webhook payload"]
    elif isinstance(document, dict):
        payload = document
        problems = _misspelled(list(document), (*INCIDENT_KEYS, *DATASET_KEYS), "")
        if isinstance(document.get("alert"), dict):
            problems += _misspelled(list(document["alert"]), ALERT_KEYS, "alert.")
        if problems:
            raise IncidentInputError(f"{source}: {'; '.join(problems)}; the incident format: {FORMAT_DOC}")
    else:
        raise IncidentInputError(f"{source} must hold one incident (a JSON or YAML object), not a list ({FORMAT_DOC})")
    visible = dict(payload)
    if not visible.get("id"):
        visible["id"] = payload["id"] = _generated_id()
        notes.append(f"no id given: using {visible['id']}")
    if isinstance(payload.get("timeline"), dict) and payload["timeline"].get("started_at"):
        visible.setdefault("started_at", payload["timeline"]["started_at"])
    try:
        return ParsedIncident(Incident.model_validate(visible), payload, notes)
    except ValidationError as exc:
        raise IncidentInputError(f"{source} is not a valid incident: {_problems(exc)} ({FORMAT_DOC})") from exc
