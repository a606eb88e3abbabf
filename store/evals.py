"""Eval runs and their per-case results, written case by case so that an interrupted run can resume."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from store.models import EvalCaseRow, EvalRunRow


class EvalStore:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def start(self, run_id: str, *, label: str, dataset: str, dataset_hash: str, config: dict[str, Any]) -> None:
        with self._sessions.begin() as session:
            session.add(
                EvalRunRow(
                    id=run_id, label=label, dataset=dataset, dataset_hash=dataset_hash, config=config, status="running"
                )
            )

    def get(self, run_id: str) -> dict[str, Any] | None:
        with self._sessions() as session:
            row = session.get(EvalRunRow, run_id)
            if row is None:
                return None
            return {
                "id": row.id,
                "label": row.label,
                "dataset": row.dataset,
                "dataset_hash": row.dataset_hash,
                "config": row.config,
                "status": row.status,
                "metrics": row.metrics,
                "created_at": row.created_at,
            }

    def list_runs(self, limit: int = 200) -> list[dict[str, Any]]:
        """Eval runs, oldest first (the dashboard draws them over time)."""
        with self._sessions() as session:
            rows = session.scalars(select(EvalRunRow).order_by(EvalRunRow.created_at.desc()).limit(limit)).all()
            return [
                {
                    "id": r.id,
                    "label": r.label,
                    "dataset": r.dataset,
                    "config": r.config,
                    "status": r.status,
                    "metrics": r.metrics,
                    "created_at": r.created_at,
                }
                for r in reversed(rows)
            ]

    def add_case(self, run_id: str, case: Any) -> None:
        with self._sessions.begin() as session:
            session.add(
                EvalCaseRow(
                    eval_run_id=run_id,
                    case_id=case.case_id,
                    expected=case.expected,
                    predicted=case.predicted,
                    confidence=case.confidence,
                    latency_ms=case.latency_ms,
                    llm_calls=case.llm_calls,
                    tokens=case.tokens,
                )
            )

    def cases(self, run_id: str) -> list[dict[str, Any]]:
        with self._sessions() as session:
            rows = session.scalars(select(EvalCaseRow).where(EvalCaseRow.eval_run_id == run_id))
            return [
                {
                    "case_id": r.case_id,
                    "expected": r.expected,
                    "predicted": r.predicted,
                    "confidence": r.confidence,
                    "latency_ms": r.latency_ms,
                    "llm_calls": r.llm_calls,
                    "tokens": r.tokens,
                }
                for r in rows
            ]

    def finish(self, run_id: str, metrics: dict[str, Any]) -> None:
        with self._sessions.begin() as session:
            row = session.get(EvalRunRow, run_id)
            if row is not None:
                row.metrics, row.status = metrics, "completed"
