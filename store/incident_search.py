"""Search past incidents by what a question or a tool call says: words of the title, description and
alert labels, weighted by how rare they are among the incidents scanned, with each hit's latest run
(category, plan, outcome). Read-only; the same code on SQLite and PostgreSQL (scored in Python over
the most recent `scan` incidents, so one question costs one bounded query)."""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from agent.glossary import english_readings
from store.models import IncidentRow, RunRow

_WORD = re.compile(r"[\w.:/-]+", re.UNICODE)
# Words a question is made of that say nothing about which incident it means.
_STOP_WORDS = (
    "the a an and or of on in at to for with what when where which who how why did do does was were "
    "is are we us our last time times ever before this that these those it its there has have had "
    "been fix fixed happen happened happens again same like any incident incidents issue problem "
    "show tell me about"
)
_STOP = frozenset(_STOP_WORDS.split())


def words(text: str) -> list[str]:
    """The words of `text` that can match an incident: lower-cased, no stop words, and the English
    readings of trade words written in another language (agent/glossary.yaml)."""
    text = f"{text} {english_readings(text)}"
    out = []
    for raw in _WORD.findall(text.lower()):
        word = raw.strip(".:/-")
        if len(word) >= 3 and word not in _STOP:
            out.append(word)
            out.extend(p for p in re.split(r"[-_.:/]", word) if len(p) >= 3 and p != word and p not in _STOP)
    return out


def _document(row: IncidentRow) -> tuple[set[str], set[str]]:
    payload = row.payload or {}
    labels = (payload.get("alert") or {}).get("labels") or {}
    title = set(words(row.title or ""))
    body = set(words(f"{str(payload.get('description') or '')[:4000]} {' '.join(map(str, labels.values()))}"))
    return title, body | title


class IncidentSearch:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def search(self, text: str, limit: int = 5, *, scan: int = 2000) -> list[dict[str, Any]]:
        """Up to `limit` incidents best matching `text`, best first; [] when no word of it matches."""
        wanted = Counter(words(text[:4000]))
        if not wanted:
            return []
        with self._sessions() as session:
            rows = session.scalars(
                select(IncidentRow)
                .where(IncidentRow.status != "correlated")
                .order_by(IncidentRow.received_at.desc())
                .limit(scan)
            ).all()
            docs = [(row, *_document(row)) for row in rows]
            frequency = Counter(w for _, _, body in docs for w in set(body) & wanted.keys())
            scored = []
            for row, title, body in docs:
                score = sum(
                    math.log(1 + len(docs) / frequency[w]) * (2.0 if w in title else 1.0) for w in wanted if w in body
                )
                if score > 0:
                    scored.append((score, row))
            scored.sort(key=lambda pair: (-pair[0], -pair[1].received_at.timestamp(), pair[1].id))
            return [self._hit(session, row, score) for score, row in scored[:limit]]

    def _hit(self, session: Session, row: IncidentRow, score: float) -> dict[str, Any]:
        run = session.scalars(
            select(RunRow).where(RunRow.incident_id == row.id).order_by(RunRow.created_at.desc()).limit(1)
        ).first()
        report = (run.report if run is not None else None) or {}
        plan = report.get("plan") or {}
        actions = report.get("actions") or []
        return {
            "id": row.id,
            "title": row.title,
            "received_at": row.received_at.isoformat(),
            "status": row.status,
            "score": round(score, 4),
            "run_id": run.id if run is not None else None,
            "category": report.get("category"),
            "subcategory": report.get("subcategory"),
            "mitigation": report.get("mitigation"),
            "operation": plan.get("operation"),
            "action": "; ".join(f"{a.get('operation')} {a.get('status')}" for a in actions[:3]) or None,
            "outcome": report.get("status") or (run.status if run is not None else None),
        }

    def get(self, incident_id: str) -> dict[str, Any] | None:
        with self._sessions() as session:
            row = session.get(IncidentRow, incident_id)
            return None if row is None else self._hit(session, row, 0.0)
