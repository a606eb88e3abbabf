"""The automation-gap report over what mitigate itself handled, read from `incident_facts`: one narrow
row per incident (its latest run's labels and outcome, its lifecycle in hours) kept by triggers as runs
change (store/migrations/versions/0008). A report over any window reads index ranges of it, never a join:
- PostgreSQL: GROUP BY over the window's rows, and `percentile_cont` for the lifecycle percentiles (the
  same linear interpolation as `statistics.quantiles`' inclusive method);
- SQLite, which sorts to GROUP BY and has no percentile aggregate: the counts by stepping from one
  group (one month) to the next in an index and counting each one's range; each percentile from the two
  order statistics it interpolates between, read by walking an index ordered by that measure within the
  month (LIMIT 2 OFFSET j). Nothing is sorted.
Python receives a few hundred numbers whatever the history."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, bindparam, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from evals.gaps import assemble_report
from store.models import IncidentFactRow as F

QUANTILES = (50, 75)
MEASURES = ("ttd", "tte", "ttm")


def _position(n: int, q: int) -> tuple[int, int]:
    """Where `statistics.quantiles(n=100, method="inclusive")` takes the q-th cut: between order statistics
    j and j + 1 (0-based), delta hundredths of the way."""
    return divmod(q * (n - 1), 100)


def _sqlite_order_statistics(session: Session, column: str, month: str | None, since: datetime, j: int) -> list[float]:
    """The window's j-th and (j+1)-th smallest values of `column` (of one month, or all months for
    closed_ttm), read by walking its index: INDEXED BY so the planner cannot choose to sort instead."""
    in_month = "month = :month AND " if month is not None else ""
    statement = text(
        f"SELECT {column} FROM incident_facts INDEXED BY ix_incident_facts_{column} "
        f"WHERE {in_month}{column} IS NOT NULL AND received_at >= :since ORDER BY {column} LIMIT 2 OFFSET :j"
    ).bindparams(bindparam("since", type_=DateTime(timezone=True)))
    params: dict[str, Any] = {"since": since, "j": j} | ({"month": month} if month is not None else {})
    return [float(v) for v in session.scalars(statement, params)]


def _sqlite_percentile(session: Session, column: str, month: str | None, since: datetime, n: int, q: int) -> float:
    j, delta = _position(n, q)
    values = _sqlite_order_statistics(session, column, month, since, j)
    if delta == 0:
        return values[0]
    return (values[0] * (100 - delta) + values[1] * delta) / 100


def _sqlite_lifecycle(
    session: Session, counts: dict[str, dict[str, int]], since: datetime
) -> dict[str, dict[str, float | None]]:
    return {
        month: {
            f"{measure}_p{q}": _sqlite_percentile(session, measure, month, since, n[measure], q) if n[measure] else None
            for measure in MEASURES
            for q in QUANTILES
        }
        for month, n in counts.items()
    }


# SQLite sorts the window to GROUP BY it (~0.3 s at 100k incidents). These step from one distinct value
# of an indexed column to the next (a recursive CTE, one index seek each: a few hundred groups, a few
# months) and count each one's rows of the window by an index range: nothing is sorted.
_SQLITE_GROUPS = text(
    "WITH RECURSIVE g(k) AS (SELECT min(group_key) FROM incident_facts UNION ALL "
    "SELECT (SELECT min(group_key) FROM incident_facts WHERE group_key > g.k) FROM g WHERE g.k IS NOT NULL) "
    "SELECT k, (SELECT count(*) FROM incident_facts WHERE group_key = g.k AND received_at >= :since) AS n "
    "FROM g WHERE k IS NOT NULL"
).bindparams(bindparam("since", type_=DateTime(timezone=True)))
_SQLITE_MONTHS = text(
    "WITH RECURSIVE m(k) AS (SELECT min(month) FROM incident_facts UNION ALL "
    "SELECT (SELECT min(month) FROM incident_facts WHERE month > m.k) FROM m WHERE m.k IS NOT NULL) "
    "SELECT k, "
    + ", ".join(
        f"(SELECT count(*) FROM incident_facts INDEXED BY ix_incident_facts_{measure} "
        f"WHERE month = m.k AND {measure} IS NOT NULL AND received_at >= :since)"
        for measure in MEASURES
    )
    + " FROM m WHERE k IS NOT NULL"
).bindparams(bindparam("since", type_=DateTime(timezone=True)))


def _sqlite_counts(session: Session, since: datetime) -> tuple[list[tuple[Any, ...]], dict[str, dict[str, int]]]:
    grouped = []
    for key, n in session.execute(_SQLITE_GROUPS, {"since": since}):
        if n:
            category, subcategory, mitigation, auto, status = key.split("\x1f")
            grouped.append((category or None, subcategory or None, mitigation or None, auto == "1", status, n))
    monthly = {
        month: dict(zip(MEASURES, (int(k) for k in counts), strict=True))
        for month, *counts in session.execute(_SQLITE_MONTHS, {"since": since})
        if counts[0]
    }
    return grouped, monthly


def _postgresql_counts(session: Session, since: datetime) -> tuple[list[tuple[Any, ...]], dict[str, dict[str, int]]]:
    window = F.received_at >= since
    grouped = session.execute(
        select(F.category, F.subcategory, F.mitigation, F.auto, F.status, func.count())
        .where(window)
        .group_by(F.category, F.subcategory, F.mitigation, F.auto, F.status)
    ).all()
    monthly = {
        month: {"ttd": int(ttd), "tte": int(tte), "ttm": int(ttm)}
        for month, ttd, tte, ttm in session.execute(
            select(F.month, func.count(F.ttd), func.count(F.tte), func.count(F.ttm)).where(window).group_by(F.month)
        )
    }
    return [tuple(row) for row in grouped], monthly


def _postgresql_lifecycle(session: Session, since: datetime) -> dict[str, dict[str, float | None]]:
    columns = [
        func.percentile_cont(q / 100).within_group(getattr(F, measure)).label(f"{measure}_p{q}")
        for measure in MEASURES
        for q in QUANTILES
    ]
    rows = session.execute(select(F.month, *columns).where(F.received_at >= since).group_by(F.month))
    return {
        row.month: {k: None if v is None else float(v) for k, v in row._mapping.items() if k != "month"} for row in rows
    }


def _closed_without_human(session: Session, dialect: str, since: datetime) -> tuple[int, float | None, float | None]:
    """How many incidents of the window mitigate closed without a human, their TTM median and maximum."""
    window = F.received_at >= since
    if dialect == "postgresql":
        n, p50, top = session.execute(
            select(
                func.count(F.closed_ttm), func.percentile_cont(0.5).within_group(F.closed_ttm), func.max(F.closed_ttm)
            ).where(window)
        ).one()
        return int(n), None if p50 is None else float(p50), None if top is None else float(top)
    # Walks of the closed_ttm index: its count in the window, then its largest value from the top.
    walk = (
        "FROM incident_facts INDEXED BY ix_incident_facts_closed_ttm"
        " WHERE closed_ttm IS NOT NULL AND received_at >= :since"
    )
    since_param = bindparam("since", type_=DateTime(timezone=True))
    n = session.scalar(text(f"SELECT count(*) {walk}").bindparams(since_param), {"since": since}) or 0
    if not n:
        return 0, None, None
    top = session.scalar(
        text(f"SELECT closed_ttm {walk} ORDER BY closed_ttm DESC LIMIT 1").bindparams(since_param), {"since": since}
    )
    return int(n), _sqlite_percentile(session, "closed_ttm", None, since, int(n), 50), float(top)


def store_gap_report(sessions: sessionmaker[Session], since: datetime) -> dict[str, Any]:
    """The gap report of incidents received since `since`, with what mitigate closed without a human
    under "mitigate" (the shape evals/gaps.py gives a dataset, plus that outcome)."""
    with sessions() as session:
        dialect = session.get_bind().dialect.name
        if dialect == "postgresql":
            grouped, monthly = _postgresql_counts(session, since)
            percentiles = _postgresql_lifecycle(session, since)
        else:
            grouped, monthly = _sqlite_counts(session, since)
            percentiles = _sqlite_lifecycle(session, monthly, since)
        n_closed, closed_p50, closed_max = _closed_without_human(session, dialect, since)
    counts: Counter[tuple[str | None, str | None, str | None, bool]] = Counter()
    by_status: Counter[str] = Counter()
    for category, subcategory, mitigation, auto, status, k in grouped:
        counts[(category, subcategory, mitigation, bool(auto))] += k
        by_status[status] += k
    lifecycle = {month: percentiles[month] | {"n": monthly[month]["ttm"]} for month in sorted(monthly)}
    report = assemble_report(counts, lifecycle)
    total = report["n"]
    report["mitigate"] = {
        "incidents": total,
        "by_status": dict(by_status),
        "closed_without_human": n_closed,
        "closed_without_human_share": n_closed / total if total else None,
        "closed_without_human_ttm_hours_p50": closed_p50,
        "closed_without_human_ttm_hours_max": closed_max,
    }
    return report
