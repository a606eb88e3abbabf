"""Finding things again: incidents, runs and eval runs listed newest first, and ids given by a prefix.

Read-only queries over the store's tables, for the CLI's `list` commands, its id arguments and the
dashboard's incident list (severity, status filter, search).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import String, cast, func, or_, select, tuple_
from sqlalchemy.orm import Session, sessionmaker

from store.models import EvalRunRow, IncidentRow, RunRow

WAITING = "awaiting_approval"
STATUS_ALIASES = {"waiting": WAITING}
Sessions = sessionmaker[Session]


class LookupFailed(LookupError):
    """No such id, or a prefix that names several; the message lists what matched."""


def severity_of(payload: dict[str, Any]) -> str:
    """The alert's severity label (critical, warning, ...), or '' when the incident has none."""
    alert = payload.get("alert") or {}
    labels = alert.get("labels") or {}
    return str(labels.get("severity") or payload.get("severity") or "")


class BadCursor(ValueError):
    """A `cursor` that no list of ours handed out (or a list of another kind did)."""


@dataclass(frozen=True)
class Page:
    """One page of a newest-first list, and the cursor of the next (None on the last page)."""

    rows: list[dict[str, Any]]
    next_cursor: str | None


def encode_cursor(kind: str, moment: datetime, row_id: str) -> str:
    raw = json.dumps([kind, moment.isoformat(), row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str) -> tuple[datetime, str]:
    """The (time, id) a page ended at. Keyset pagination: the next page is what sorts after it, so a page
    costs an index range scan however deep, and rows arriving meanwhile neither repeat nor vanish."""
    try:
        found, moment, row_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if found != kind or not isinstance(row_id, str):
            raise ValueError(kind)
        return datetime.fromisoformat(moment), row_id
    except (ValueError, TypeError, binascii.Error) as exc:
        raise BadCursor(f"cursor is not one a list of {kind}s handed out") from exc


def _page(kind: str, rows: list[Any], limit: int, at: Any) -> str | None:
    return encode_cursor(kind, at(rows[-1]), rows[-1].id) if rows and len(rows) == limit else None


def incidents_page(
    sessions: Sessions,
    *,
    status: str | None = None,
    search: str | None = None,
    source: str | None = None,
    since: datetime | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page:
    """Incidents newest first, each with its severity and newest run; `search` matches id, title and text.
    Ordered by (received_at, id) descending: the order of an index, with any of the filters."""
    order = (IncidentRow.received_at.desc(), IncidentRow.id.desc())
    query = select(IncidentRow).order_by(*order).limit(limit)
    if status:
        wanted = STATUS_ALIASES.get(status, status)
        query = query.where(or_(IncidentRow.status == wanted, IncidentRow.status.startswith(f"{wanted}+")))
    if source:
        query = query.where(IncidentRow.source == source)
    if since is not None:
        query = query.where(IncidentRow.received_at >= since)
    if cursor:
        moment, row_id = decode_cursor("incident", cursor)
        query = query.where(tuple_(IncidentRow.received_at, IncidentRow.id) < tuple_(moment, row_id))
    if search:
        like = f"%{search.lower()}%"
        query = query.where(
            or_(
                func.lower(IncidentRow.id).like(like),
                func.lower(IncidentRow.title).like(like),
                func.lower(cast(IncidentRow.payload, String)).like(like),
            )
        )
    with sessions() as session:
        rows = session.scalars(query).all()
        latest: dict[str, RunRow] = {}
        runs = select(RunRow).where(RunRow.incident_id.in_([r.id for r in rows]))
        for run in session.scalars(runs.order_by(RunRow.created_at.desc(), RunRow.id.desc())):
            latest.setdefault(run.incident_id, run)
        out = []
        for row in rows:
            newest = latest.get(row.id)
            out.append(
                {
                    "id": row.id,
                    "title": row.title,
                    "source": row.source,
                    "status": row.status,
                    "severity": severity_of(row.payload or {}),
                    "received_at": row.received_at.isoformat(),
                    "run_id": newest.id if newest else None,
                    "category": newest.category if newest else None,
                    "subcategory": newest.subcategory if newest else None,
                    "mitigation": newest.mitigation if newest else None,
                }
            )
        return Page(out, _page("incident", list(rows), limit, lambda r: r.received_at))


def list_incidents(sessions: Sessions, **filters: Any) -> list[dict[str, Any]]:
    """The rows of `incidents_page` (the first page unless a cursor is given)."""
    return incidents_page(sessions, **filters).rows


def runs_page(
    sessions: Sessions,
    *,
    status: str | None = None,
    source: str | None = None,
    since: datetime | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page:
    """Triage runs newest first; `status=waiting` is the runs waiting for an approval; `source` is the
    way their incident came in."""
    query = select(RunRow, IncidentRow.title).join(IncidentRow, RunRow.incident_id == IncidentRow.id)
    if status:
        query = query.where(RunRow.status == STATUS_ALIASES.get(status, status))
    if source:
        query = query.where(IncidentRow.source == source)
    if since is not None:
        query = query.where(RunRow.created_at >= since)
    if cursor:
        moment, row_id = decode_cursor("run", cursor)
        query = query.where(tuple_(RunRow.created_at, RunRow.id) < tuple_(moment, row_id))
    query = query.order_by(RunRow.created_at.desc(), RunRow.id.desc()).limit(limit)
    with sessions() as session:
        found = session.execute(query).all()
        rows = [
            {
                "id": run.id,
                "incident_id": run.incident_id,
                "title": title,
                "status": run.status,
                "category": run.category,
                "subcategory": run.subcategory,
                "mitigation": run.mitigation,
                "risk": (run.report or {}).get("risk"),
                "created_at": run.created_at.isoformat(),
            }
            for run, title in found
        ]
        return Page(rows, _page("run", [run for run, _ in found], limit, lambda r: r.created_at))


def list_runs(sessions: Sessions, **filters: Any) -> list[dict[str, Any]]:
    return runs_page(sessions, **filters).rows


def eval_runs_page(
    sessions: Sessions, *, since: datetime | None = None, cursor: str | None = None, limit: int = 50
) -> Page:
    """Eval runs newest first, with their headline figures."""
    query = select(EvalRunRow).order_by(EvalRunRow.created_at.desc(), EvalRunRow.id.desc()).limit(limit)
    if since is not None:
        query = query.where(EvalRunRow.created_at >= since)
    if cursor:
        moment, row_id = decode_cursor("eval run", cursor)
        query = query.where(tuple_(EvalRunRow.created_at, EvalRunRow.id) < tuple_(moment, row_id))
    with sessions() as session:
        found = session.scalars(query).all()
        rows = [
            {
                "id": row.id,
                "label": row.label,
                "dataset": row.dataset,
                "status": row.status,
                "engine": (row.config or {}).get("engine"),
                "split": (row.config or {}).get("split"),
                "n": (row.metrics or {}).get("n"),
                "category_accuracy": (row.metrics or {}).get("category_accuracy"),
                "mitigation_accuracy": (row.metrics or {}).get("mitigation_accuracy"),
                "created_at": row.created_at.isoformat(),
            }
            for row in found
        ]
        return Page(rows, _page("eval run", list(found), limit, lambda r: r.created_at))


def list_eval_runs(sessions: Sessions, **filters: Any) -> list[dict[str, Any]]:
    return eval_runs_page(sessions, **filters).rows


_TABLES: dict[str, Any] = {"incident": IncidentRow, "run": RunRow, "eval run": EvalRunRow}


def resolve(sessions: Sessions, kind: str, given: str) -> str:
    """The full id of an incident, run or eval run from the id or a unique prefix of it."""
    table = _TABLES[kind]
    with sessions() as session:
        if session.get(table, given) is not None:
            return given
        escaped = given.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        matches = list(
            session.scalars(select(table.id).where(table.id.like(f"{escaped}%", escape="\\")).limit(6)).all()
        )
    if len(matches) == 1:
        return str(matches[0])
    if not matches:
        raise LookupFailed(f"no {kind} {given}" + (" (nor one whose id starts so)" if given else ""))
    shown = ", ".join(str(m) for m in matches[:5])
    raise LookupFailed(f"{given!r} is the start of several {kind} ids ({shown}{', ...' if len(matches) > 5 else ''})")


def full_run_id(sessions: Sessions, given: str) -> str:
    """A run id from chat (`/mitigate approve 3f9c0a`): the full id when the prefix names one run, else
    what was given (the caller then says there is no such run)."""
    try:
        return resolve(sessions, "run", given)
    except LookupFailed:
        return given
