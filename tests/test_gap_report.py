"""The automation-gap report over paper156 reproduces the paper's Table 2 and Table 3 counts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.test_paper156 import TABLE2, TABLE3


def _report(fmt: str) -> str:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "api.cli",
            "report",
            "gaps",
            "--dataset",
            "evals/datasets/paper156.jsonl",
            "--format",
            fmt,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_tables_2_and_3_and_figure_1_counts():
    report = json.loads(_report("json"))
    subcategories = {
        (row["category"], s["subcategory"]): s["count"] for row in report["table2"] for s in row["subcategories"]
    }
    assert subcategories == TABLE2
    assert {row["action"]: row["count"] for row in report["table3"]} == TABLE3
    assert report["auto_detected"] == 115
    assert sum(report["crosstab"]["A2"].values()) == 25 and report["crosstab"]["A2"]["M6"] == 1
    assert report["lifecycle"]["2025-04"]["ttm_p75"] == pytest.approx(32.0, rel=0.02)
    assert report["lifecycle"]["2025-05"]["ttm_p75"] == pytest.approx(49.0, rel=0.02)


def test_markdown_and_csv_carry_the_same_numbers():
    markdown, csv_text = _report("md"), _report("csv")
    assert "| A3 | 94 | 60.3% |" in markdown and "| M5 | Manual triage / monitor (no action) |" in markdown
    assert "table3,M5,count,75" in csv_text and "crosstab,A2,M6,1" in csv_text


def test_the_report_over_the_store_counts_what_mitigate_closed_without_a_human(tmp_path):
    """Three incidents through the real graph and store: a resolved blip (no action), a saturation
    scaled out and verified with no approval needed, and one waiting for a human's approval."""
    from datetime import UTC, datetime

    from agent.context import TriageContext
    from agent.rulebook import load_rulebook
    from agent.schemas import Incident
    from api.runs import start_run
    from api.settings import Settings
    from api.wiring import open_checkpointer, open_store
    from evals.gaps import gap_report, to_markdown
    from evals.gaps_store import store_gap_report
    from tests.fakes import FakeCluster, FakeSla
    from tests.gap_oracle import store_cases
    from tests.test_history import _flat
    from tools.guard import load_policy

    settings = Settings(database_url=f"sqlite:///{tmp_path}/g.db")
    store = open_store(settings)
    statuses = []
    with open_checkpointer(settings.database_url) as checkpointer:
        for name in ("transient-blip-resolved", "exhaustion-429-saturated", "bad-node-xid"):
            payload = json.loads((ROOT / "examples" / f"{name}.json").read_text())
            context = TriageContext(
                rulebook=load_rulebook(),
                policy=load_policy(),
                recorder=store.recorder,
                cluster=FakeCluster(),
                sla=FakeSla("verified"),
            )
            outcome = start_run(
                Incident.model_validate(payload),
                source="alertmanager" if name != "bad-node-xid" else "slack",
                payload=payload,
                recorder=store.recorder,
                context=context,
                checkpointer=checkpointer,
            )
            statuses.append(outcome.status)
    since = datetime(2020, 1, 1, tzinfo=UTC)
    cases, outcome = store_cases(store.sessions, since)
    closed = sum(s in ("no_action", "mitigated") for s in statuses)
    assert len(cases) == 3 and outcome["incidents"] == 3
    assert outcome["closed_without_human"] == closed >= 1
    assert outcome["by_status"] == {s: statuses.count(s) for s in set(statuses)}
    report = gap_report(cases)
    assert report["auto_detected"] == 2  # the Slack one was reported by a person
    assert sum(row["count"] for row in report["table3"]) == 3
    assert "What mitigate closed without a human" in to_markdown(report | {"mitigate": outcome})
    # The SQL aggregation gives what loading every incident with its runs and steps gives.
    got, expected = _flat(store_gap_report(store.sessions, since)), _flat(report | {"mitigate": outcome})
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == (pytest.approx(value, rel=1e-6, abs=1e-6) if isinstance(value, float) else value), key
    assert store_gap_report(store.sessions, datetime.now(UTC).replace(year=2100))["mitigate"]["incidents"] == 0
