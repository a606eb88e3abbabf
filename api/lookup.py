"""Finding things again: incidents, runs and eval runs listed newest first, and ids given by a prefix.

Read-only queries over the store's tables, for the CLI's `list` commands, its id arguments and the
dashboard's incident list (severity, status filter, search).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, cast, func, or_, select
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


def list_incidents(
    sessions: Sessions, *, status: str | None = None, search: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Incidents newest first, each with its severity and newest run; `search` matches id, title and text."""
    query = select(IncidentRow).order_by(IncidentRow.received_at.desc()).limit(limit)
    if status:
        wanted = STATUS_ALIASES.get(status, status)
        query = query.where(or_(IncidentRow.status == wanted, IncidentRow.status.startswith(f"{wanted}+")))
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
        out = []
        for row in rows:
            latest = session.scalars(
                select(RunRow).where(RunRow.incident_id == row.id).order_by(RunRow.created_at.desc()).limit(1)
            ).first()
            out.append(
                {
                    "id": row.id,
                    "title": row.title,
                    "source": row.source,
                    "status": row.status,
                    "severity": severity_of(row.payload or {}),
                    "received_at": row.received_at.isoformat(),
                    "run_id": latest.id if latest else None,
                    "category": latest.category if latest else None,
                    "subcategory": latest.subcategory if latest else None,
                    "mitigation": latest.mitigation if latest else None,
                }
            )
        return out


def list_runs(sessions: Sessions, *, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Triage runs newest first; `status=waiting` is the runs waiting for an approval."""
    query = select(RunRow, IncidentRow.title).join(IncidentRow, RunRow.incident_id == IncidentRow.id)
    if status:
        query = query.where(RunRow.status == STATUS_ALIASES.get(status, status))
    query = query.order_by(RunRow.created_at.desc()).limit(limit)
    with sessions() as session:
        return [
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
            for run, title in session.execute(query).all()
        ]


def list_eval_runs(sessions: Sessions, *, limit: int = 50) -> list[dict[str, Any]]:
    """Eval runs newest first, with their headline figures."""
    query = select(EvalRunRow).order_by(EvalRunRow.created_at.desc()).limit(limit)
    with sessions() as session:
        return [
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
            for row in session.scalars(query).all()
        ]


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
