"""The automation-gap report over what mitigate itself handled, read from `incident_facts`: one narrow
row per incident (its latest run's labels and outcome, its lifecycle in hours), brought up to date for
the incidents written since the last report before it reads (store/facts.py; triggers note what changed,
migrations 0008-0009). A report over any window reads index ranges of it, never a join:
- PostgreSQL: three statements over the window's rows: the counts per group (by the one `group_key`
  column), per month the measures' counts and `percentile_cont` (the same linear interpolation as
  `statistics.quantiles`' inclusive method; one sort per measure, in memory), and what mitigate closed;
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
from store.facts import refresh_facts
from store.models import IncidentFactRow as F

QUANTILES = (50, 75)
MEASURES = ("ttd", "tte", "ttm")


def _position(n: int, q: int) -> tuple[int, int]:
    """Where `statistics.quantiles(n=100, method="inclusive")` takes the q-th cut: between order statistics
    j and j + 1 (0-based), delta hundredths of the way."""
    return divmod(q * (n - 1), 100)


_SINCE = bindparam("since", type_=DateTime(timezone=True))


def _walk(column: str, month: str | None, n: int, lo: int, hi: int, k: int) -> tuple[str, dict[str, Any]]:
    """A query of the window's order statistics lo..hi (0-based, ascending) of `column` among its n values
    (of one month, or all months for closed_ttm), walking its index from the nearer end: INDEXED BY so
    the planner cannot choose to sort instead. `k` numbers the parameters."""
    in_month = f"month = :m{k} AND " if month is not None else ""
    bottom = lo <= n - 1 - hi
    order, offset = (column, lo) if bottom else (f"{column} DESC", n - 1 - hi)
    sql = (
        f"SELECT {k} AS k, v FROM (SELECT {column} AS v FROM incident_facts INDEXED BY ix_incident_facts_{column} "
        f"WHERE {in_month}{column} IS NOT NULL AND received_at >= :since ORDER BY {order} "
        f"LIMIT {hi - lo + 1} OFFSET :o{k})"
    )
    return sql, {f"o{k}": offset} | ({f"m{k}": month} if month is not None else {})


def _sqlite_order_statistics(
    session: Session, since: datetime, wanted: list[tuple[str, str | None, int, int, int]]
) -> list[list[float]]:
    """For each (column, month, n, lo, hi): its order statistics lo..hi, ascending; one statement."""
    if not wanted:
        return []
    parts, params = [], {"since": since}
    for k, (column, month, n, lo, hi) in enumerate(wanted):
        sql, more = _walk(column, month, n, lo, hi, k)
        parts.append(sql)
        params |= more
    found: list[list[float]] = [[] for _ in wanted]
    for k, value in session.execute(text(" UNION ALL ".join(parts)).bindparams(_SINCE), params):
        found[k].append(float(value))
    return [sorted(values) for values in found]


def _interpolate(values: list[float], delta: int) -> float:
    return values[0] if delta == 0 else (values[0] * (100 - delta) + values[1] * delta) / 100


def _sqlite_percentiles(
    session: Session, counts: dict[str, dict[str, int]], n_closed: int, since: datetime
) -> tuple[dict[str, dict[str, float | None]], float | None, float | None]:
    """The lifecycle percentiles per month, and the median and maximum TTM closed without a human, from
    the order statistics `statistics.quantiles`' inclusive method interpolates between."""
    cuts: list[tuple[str, str | None, int, int, int]] = []  # (measure, month, q, n, delta)
    wanted: list[tuple[str, str | None, int, int, int]] = []
    for month, n in counts.items():
        for measure in MEASURES:
            for q in QUANTILES:
                if n[measure]:
                    j, delta = _position(n[measure], q)
                    cuts.append((measure, month, q, n[measure], delta))
                    wanted.append((measure, month, n[measure], j, j + (delta > 0)))
    if n_closed:
        j, delta = _position(n_closed, 50)
        cuts.append(("closed_ttm", None, 50, n_closed, delta))
        wanted.append(("closed_ttm", None, n_closed, j, j + (delta > 0)))
        cuts.append(("closed_ttm", None, 100, n_closed, 0))
        wanted.append(("closed_ttm", None, n_closed, n_closed - 1, n_closed - 1))
    picked = {
        (measure, month, q): _interpolate(values, delta)
        for (measure, month, q, _, delta), values in zip(
            cuts, _sqlite_order_statistics(session, since, wanted), strict=True
        )
    }
    lifecycle = {
        month: {f"{m}_p{q}": picked.get((m, month, q)) for m in MEASURES for q in QUANTILES} for month in counts
    }
    return lifecycle, picked.get(("closed_ttm", None, 50)), picked.get(("closed_ttm", None, 100))


# SQLite sorts the window to GROUP BY it (~0.3 s at 100k incidents). These step from one distinct value
# of an indexed column to the next (a recursive CTE, one index seek each: a few hundred groups, a few
# months) and count each one's rows of the window by an index range: nothing is sorted.
_SQLITE_GROUPS = text(
    "WITH RECURSIVE g(k) AS (SELECT min(group_key) FROM incident_facts UNION ALL "
    "SELECT (SELECT min(group_key) FROM incident_facts WHERE group_key > g.k) FROM g WHERE g.k IS NOT NULL) "
    "SELECT k, (SELECT count(*) FROM incident_facts WHERE group_key = g.k AND received_at >= :since) AS n "
    "FROM g WHERE k IS NOT NULL"
).bindparams(_SINCE)
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
).bindparams(_SINCE)


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


# PostgreSQL's default work_mem (4 MB) sends a sort of ~100k values to disk; the report's three sorts
# (one per measure) then cost several times their in-memory time. SET LOCAL: for this transaction only.
_POSTGRESQL_WORK_MEM = text("SET LOCAL work_mem = '32MB'")
_FRACTIONS = [q / 100 for q in QUANTILES]


def _postgresql_counts(session: Session, since: datetime) -> list[tuple[Any, ...]]:
    """The window's counts per group: by `group_key`, the one column that joins the labels (hashed, one
    column instead of five), split back here as SQLite's path does."""
    grouped = []
    for key, n in session.execute(
        select(F.group_key, func.count()).where(F.received_at >= since).group_by(F.group_key)
    ):
        category, subcategory, mitigation, auto, status = key.split("\x1f")
        grouped.append((category or None, subcategory or None, mitigation or None, auto == "1", status, n))
    return grouped


def _postgresql_lifecycle(
    session: Session, since: datetime
) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, float | None]]]:
    """Per month, in one pass over the window: how many values of each measure, and their percentiles
    (`percentile_cont` over an array: all of a measure's fractions from one sort)."""
    columns = [func.count(getattr(F, measure)) for measure in MEASURES] + [
        func.percentile_cont(_FRACTIONS).within_group(getattr(F, measure)) for measure in MEASURES
    ]
    monthly: dict[str, dict[str, int]] = {}
    lifecycle: dict[str, dict[str, float | None]] = {}
    for month, *values in session.execute(select(F.month, *columns).where(F.received_at >= since).group_by(F.month)):
        counts, cuts = values[: len(MEASURES)], values[len(MEASURES) :]
        monthly[month] = {measure: int(n) for measure, n in zip(MEASURES, counts, strict=True)}
        lifecycle[month] = {
            f"{measure}_p{q}": None if array is None or array[k] is None else float(array[k])
            for measure, array in zip(MEASURES, cuts, strict=True)
            for k, q in enumerate(QUANTILES)
        }
    return monthly, lifecycle


def _postgresql_closed(session: Session, since: datetime) -> tuple[int, float | None, float | None]:
    """How many incidents of the window mitigate closed without a human, their TTM median and maximum."""
    median = func.percentile_cont(0.5).within_group(F.closed_ttm)
    n, p50, top = session.execute(
        select(func.count(F.closed_ttm), median, func.max(F.closed_ttm)).where(F.received_at >= since)
    ).one()
    return int(n), None if p50 is None else float(p50), None if top is None else float(top)


_SQLITE_CLOSED = text(
    "SELECT count(*) FROM incident_facts INDEXED BY ix_incident_facts_closed_ttm"
    " WHERE closed_ttm IS NOT NULL AND received_at >= :since"
).bindparams(_SINCE)


def store_gap_report(sessions: sessionmaker[Session], since: datetime) -> dict[str, Any]:
    """The gap report of incidents received since `since`, with what mitigate closed without a human
    under "mitigate" (the shape evals/gaps.py gives a dataset, plus that outcome)."""
    refresh_facts(sessions.kw["bind"])  # the facts of incidents written since the last report
    with sessions() as session:
        dialect = session.get_bind().dialect.name
        if dialect == "postgresql":
            session.execute(_POSTGRESQL_WORK_MEM)
            grouped = _postgresql_counts(session, since)
            monthly, percentiles = _postgresql_lifecycle(session, since)
            n_closed, closed_p50, closed_max = _postgresql_closed(session, since)
        else:
            grouped, monthly = _sqlite_counts(session, since)
            n_closed = int(session.scalar(_SQLITE_CLOSED, {"since": since}) or 0)
            percentiles, closed_p50, closed_max = _sqlite_percentiles(session, monthly, n_closed, since)
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
