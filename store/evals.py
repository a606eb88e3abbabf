"""Eval runs and their per-case results, so that models and rulebook versions can be compared later."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from store.models import EvalCaseRow, EvalRunRow


def save_eval_run(
    sessions: sessionmaker[Session],
    *,
    run_id: str,
    label: str,
    dataset: str,
    dataset_hash: str,
    config: dict[str, Any],
    metrics: dict[str, Any],
    cases: Sequence[Any],
) -> None:
    with sessions.begin() as session:
        session.add(
            EvalRunRow(
                id=run_id,
                label=label,
                dataset=dataset,
                dataset_hash=dataset_hash,
                config=config,
                metrics=metrics,
                status="completed",
            )
        )
        session.flush()
        session.add_all(
            EvalCaseRow(
                eval_run_id=run_id,
                case_id=c.case_id,
                expected=c.expected,
                predicted=c.predicted,
                confidence=c.confidence,
                latency_ms=c.latency_ms,
                llm_calls=c.llm_calls,
                tokens=c.tokens,
            )
            for c in cases
        )
