"""Search past incidents by what a question or a tool call says: words of the title, description and
alert labels, weighted by how rare they are among the incidents scanned, with each hit's latest run
(category, plan, outcome). Read-only; the same code on SQLite and PostgreSQL (scored in Python over
the most recent `scan` incidents, so one question costs one bounded query)."""

from __future__ import annotations

import math
import re
import threading
from collections import Counter, OrderedDict
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


_PART = re.compile(r"[^-_.:/]{3,}")


def words(text: str) -> list[str]:
    """The words of `text` that can match an incident: lower-cased, no stop words, and the English
    readings of trade words written in another language (agent/glossary.yaml)."""
    text = f"{text} {english_readings(text)}"
    out = []
    for raw in _WORD.findall(text.lower()):
        word = raw.strip(".:/-")
        if len(word) >= 3 and word not in _STOP:
            out.append(word)
            parts = _PART.findall(word)
            if len(parts) > 1:  # "llama-70b" also matches "llama" and "70b"
                out.extend(p for p in parts if p not in _STOP)
    return out


Document = tuple[frozenset[str], frozenset[str]]  # (title words, all words)


def _document(title: str, payload: dict[str, Any]) -> Document:
    labels = (payload.get("alert") or {}).get("labels") or {}
    title_words = frozenset(words(title or ""))
    body = words(f"{str(payload.get('description') or '')[:4000]} {' '.join(map(str, labels.values()))}")
    return title_words, title_words | frozenset(body)


class _DocumentCache:
    """Words of stored incidents by (id, updated_at): an incident's text is read and split once per
    change, not once per question (bounded; shared by the searches of one process)."""

    def __init__(self, size: int = 50_000) -> None:
        self._docs: OrderedDict[tuple[str, str], Document] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> Document | None:
        with self._lock:
            return self._docs.get(key)

    def put(self, key: tuple[str, str], doc: Document) -> None:
        with self._lock:
            self._docs[key] = doc
            while len(self._docs) > self._size:
                self._docs.popitem(last=False)


_CACHE = _DocumentCache()


class IncidentSearch:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def _documents(self, session: Session, scan: int) -> list[tuple[str, float, Document]]:
        """(id, received timestamp, words) of the newest `scan` incidents that are not duplicates."""
        keys = session.execute(
            select(IncidentRow.id, IncidentRow.updated_at, IncidentRow.received_at)
            .where(IncidentRow.status != "correlated")
            .order_by(IncidentRow.received_at.desc())
            .limit(scan)
        ).all()
        stamp = {row.id: (row.id, str(row.updated_at)) for row in keys}
        missing = [i for i, key in stamp.items() if _CACHE.get(key) is None]
        for start in range(0, len(missing), 500):
            chunk = missing[start : start + 500]
            rows = session.execute(
                select(IncidentRow.id, IncidentRow.title, IncidentRow.payload).where(IncidentRow.id.in_(chunk))
            ).all()
            for row in rows:
                _CACHE.put(stamp[row.id], _document(row.title, row.payload or {}))
        out = []
        for row in keys:
            doc = _CACHE.get(stamp[row.id])
            if doc is None:  # pushed out of the cache meanwhile: read it again
                found = session.get(IncidentRow, row.id)
                doc = _document(found.title, found.payload or {}) if found is not None else (frozenset(), frozenset())
            out.append((row.id, row.received_at.timestamp(), doc))
        return out

    def search(self, text: str, limit: int = 5, *, scan: int = 2000) -> list[dict[str, Any]]:
        """Up to `limit` incidents best matching `text`, best first; [] when no word of it matches."""
        wanted = set(words(text[:4000]))
        if not wanted:
            return []
        with self._sessions() as session:
            docs = self._documents(session, scan)
            frequency = Counter(w for _, _, (_, body) in docs for w in body & wanted)
            scored = []
            for incident_id, received, (title, body) in docs:
                score = sum(
                    math.log(1 + len(docs) / frequency[w]) * (2.0 if w in title else 1.0) for w in wanted & body
                )
                if score > 0:
                    scored.append((score, received, incident_id))
            scored.sort(key=lambda hit: (-hit[0], -hit[1], hit[2]))
            hits = []
            for score, _, incident_id in scored[:limit]:
                row = session.get(IncidentRow, incident_id)
                if row is not None:
                    hits.append(self._hit(session, row, score))
            return hits

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
