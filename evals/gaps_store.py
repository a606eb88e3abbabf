"""The automation-gap report over what mitigate itself handled, aggregated in the database: incidents
since a date, each labelled with its latest run's classification and plan, counted by GROUP BY, and the
lifecycle percentiles picked by window functions. Python receives a few hundred numbers, not the
incidents (at 100k incidents the old load-everything report took tens of seconds and a gigabyte)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, case, func, literal, or_, select, union_all
from sqlalchemy.orm import Session, aliased, sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from evals.gaps import assemble_report
from store.models import IncidentRow, RunRow

AUTOMATIC_SOURCES = frozenset({"alertmanager", "pagerduty", "webhook"})  # an alert, not a person, opened it
QUANTILES = (50, 75)


def _hours(dialect: str, end: Any, start: Any) -> ColumnElement[Any]:
    if dialect == "sqlite":
        return (func.julianday(end) - func.julianday(start)) * 24.0
    return func.extract("epoch", end - start) / 3600.0


def _month(dialect: str, moment: Any) -> ColumnElement[Any]:
    if dialect == "sqlite":
        return func.strftime("%Y-%m", moment)
    return func.to_char(func.timezone("UTC", moment), "YYYY-MM")


def _facts(dialect: str, since: datetime) -> Select[Any]:
    """One row per incident since `since`: where it came from, its latest run's labels and outcome, and
    its lifecycle in hours from the start of the impact."""
    other = aliased(RunRow)  # the incident's runs, apart from the one joined
    latest = (
        select(other.id)
        .where(other.incident_id == IncidentRow.id)
        .order_by(other.created_at.desc(), other.id.desc())
        .limit(1)
        .correlate(IncidentRow)
        .scalar_subquery()
    )
    engaged = (
        select(func.min(other.created_at))
        .where(other.incident_id == IncidentRow.id)
        .correlate(IncidentRow)
        .scalar_subquery()
    )
    started = func.coalesce(IncidentRow.started_at, IncidentRow.received_at)
    known = and_(RunRow.category.is_not(None), RunRow.category != "unknown")
    return (
        select(
            case((known, RunRow.category)).label("category"),
            case((known, RunRow.subcategory)).label("subcategory"),
            RunRow.mitigation.label("mitigation"),
            IncidentRow.source.in_(sorted(AUTOMATIC_SOURCES)).label("auto"),
            func.coalesce(RunRow.status, "no_run").label("status"),
            RunRow.closed_without_human.label("without_human"),
            _month(dialect, started).label("month"),
            _hours(dialect, IncidentRow.received_at, started).label("ttd"),
            _hours(dialect, engaged, started).label("tte"),
            _hours(dialect, RunRow.closed_at, started).label("ttm"),
        )
        .select_from(IncidentRow)
        .outerjoin(RunRow, RunRow.id == latest)
        .where(IncidentRow.received_at >= since)
    )


def _percentile_rows(session: Session, facts: Any) -> dict[tuple[str, str], tuple[int, dict[int, float]]]:
    """For each (month, measure): how many values, and only the order statistics the percentiles and the
    maximum need (positions j and j+1 of statistics.quantiles' inclusive method)."""
    measures = union_all(
        select(facts.c.month, literal("ttd").label("measure"), facts.c.ttd.label("v")),
        select(facts.c.month, literal("tte"), facts.c.tte).where(facts.c.tte.is_not(None)),
        select(facts.c.month, literal("ttm"), facts.c.ttm).where(facts.c.ttm.is_not(None)),
        select(literal("all"), literal("closed_ttm"), facts.c.ttm).where(
            facts.c.ttm.is_not(None), facts.c.without_human.is_(True)
        ),
    ).subquery()
    partition = [measures.c.month, measures.c.measure]
    ranked = select(
        measures.c.month,
        measures.c.measure,
        measures.c.v,
        (func.row_number().over(partition_by=partition, order_by=measures.c.v) - 1).label("i"),
        func.count().over(partition_by=partition).label("n"),
    ).subquery()
    wanted = [ranked.c.i == ranked.c.n - 1]
    for q in QUANTILES:
        j = (ranked.c.n - 1) * q // 100
        wanted += [ranked.c.i == j, ranked.c.i == j + 1]
    out: dict[tuple[str, str], tuple[int, dict[int, float]]] = {}
    for month, measure, value, i, n in session.execute(select(ranked).where(or_(*wanted))):
        out.setdefault((month, measure), (int(n), {}))[1][int(i)] = float(value)
    return out


def _percentile(n: int, values: dict[int, float], q: int) -> float:
    j, delta = divmod(q * (n - 1), 100)
    if delta == 0:
        return values[j]
    return (values[j] * (100 - delta) + values[j + 1] * delta) / 100


def store_gap_report(sessions: sessionmaker[Session], since: datetime) -> dict[str, Any]:
    """The gap report of incidents received since `since`, with what mitigate closed without a human
    under "mitigate" (the shape evals/gaps.py gives a dataset, plus that outcome)."""
    with sessions() as session:
        dialect = session.get_bind().dialect.name
        facts = _facts(dialect, since).cte("facts")
        grouped = session.execute(
            select(
                facts.c.category,
                facts.c.subcategory,
                facts.c.mitigation,
                facts.c.auto,
                facts.c.status,
                func.count(),
                func.count(facts.c.ttm).filter(facts.c.without_human.is_(True)),
            ).group_by(facts.c.category, facts.c.subcategory, facts.c.mitigation, facts.c.auto, facts.c.status)
        ).all()
        picked = _percentile_rows(session, facts)
    counts: Counter[tuple[str | None, str | None, str | None, bool]] = Counter()
    by_status: Counter[str] = Counter()
    closed = 0
    for category, subcategory, mitigation, auto, status, k, closed_k in grouped:
        counts[(category, subcategory, mitigation, bool(auto))] += k
        by_status[status] += k
        closed += closed_k
    months = sorted({month for month, measure in picked if measure == "ttd"})
    lifecycle: dict[str, dict[str, Any]] = {}
    for month in months:
        row: dict[str, Any] = {}
        for measure in ("ttd", "tte", "ttm"):
            n, values = picked.get((month, measure), (0, {}))
            for q in QUANTILES:
                row[f"{measure}_p{q}"] = _percentile(n, values, q) if n else None
        lifecycle[month] = row | {"n": picked.get((month, "ttm"), (0, {}))[0]}
    report = assemble_report(counts, lifecycle)
    n_closed, closed_values = picked.get(("all", "closed_ttm"), (0, {}))
    total = report["n"]
    report["mitigate"] = {
        "incidents": total,
        "by_status": dict(by_status),
        "closed_without_human": closed,
        "closed_without_human_share": closed / total if total else None,
        "closed_without_human_ttm_hours_p50": _percentile(n_closed, closed_values, 50) if n_closed else None,
        "closed_without_human_ttm_hours_max": closed_values[n_closed - 1] if n_closed else None,
    }
    return report
