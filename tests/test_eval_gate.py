"""Comparing eval runs, and the gate CI runs against the committed rulebook baseline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agent.rulebook import DEFAULT_RULEBOOK
from evals.compare import Case, compare, mcnemar
from tests.conftest import ROOT

BASELINE = ROOT / "evals" / "baselines" / "rulebook-paper156.json"
DATASET = ROOT / "evals" / "datasets" / "paper156.jsonl"


def test_mcnemar_exact_p_value():
    # 10 discordant pairs favour A, 2 favour B: p = 2 * (C(12,0) + C(12,1) + C(12,2)) / 2**12
    a = [True] * 10 + [False] * 2 + [True] * 5
    b = [False] * 10 + [True] * 2 + [True] * 5
    assert mcnemar(a, b) == (10, 2, pytest.approx(2 * (1 + 12 + 66) / 4096))
    assert mcnemar([True, False], [True, False])[2] == 1.0


def test_compare_reports_deltas_and_flips():
    expected = {"category": "A3", "subcategory": "timeout", "mitigation": "M1"}
    right = {"category": "A3", "subcategory": "timeout", "mitigation": "M1"}
    wrong = {"category": "A1", "subcategory": "bad_node", "mitigation": "M4"}
    a = [Case(str(i), expected, right) for i in range(20)]
    b = [Case(str(i), expected, right if i >= 5 else wrong) for i in range(20)]
    result = compare(a, b, resamples=200)
    assert result["deltas"]["category_accuracy"]["delta"] == pytest.approx(-0.25)
    low, high = result["deltas"]["category_accuracy"]["ci95"]
    assert low <= -0.25 <= high < 0
    assert [f["id"] for f in result["flipped"]] == ["0", "1", "2", "3", "4"]


def _eval(tmp_path: Path, rulebook: Path | None = None) -> Path:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MITIGATE_", "OPENAI_"))}
    env |= {"MITIGATE_DATABASE_URL": f"sqlite:///{tmp_path}/g.db", "MITIGATE_STATE_DIR": str(tmp_path / "state")}
    if rulebook is not None:
        env["MITIGATE_RULEBOOK_PATH"] = str(rulebook)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "api.cli",
            "eval",
            "run",
            "--dataset",
            str(DATASET),
            "--engine",
            "rulebook",
            "--json",
            "--cases",
            "--no-store",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    out = tmp_path / f"candidate-{rulebook.stem if rulebook else 'current'}.json"
    out.write_text(done.stdout)
    return out


def _gate(candidate: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "api.cli",
            "eval",
            "gate",
            "--baseline",
            str(BASELINE),
            "--candidate",
            str(candidate),
            "--resamples",
            "300",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_current_rulebook_passes_the_gate_against_the_committed_baseline(tmp_path):
    result = _gate(_eval(tmp_path))
    assert result.returncode == 0, result.stdout


def test_the_gate_fails_a_rulebook_with_one_subcategory_removed(tmp_path):
    data = yaml.safe_load(DEFAULT_RULEBOOK.read_text())
    data["subcategories"]["timeout"]["phrases"] = []
    data["subcategories"]["timeout"]["alerts"] = []
    data["subcategories"]["timeout"]["signals"] = []
    degraded = tmp_path / "degraded.yaml"
    degraded.write_text(yaml.safe_dump(data))
    result = _gate(_eval(tmp_path, degraded))
    assert result.returncode == 1 and "category accuracy worse" in result.stdout
    assert json.loads(BASELINE.read_text())["n"] == 156


def test_an_interrupted_eval_run_resumes_where_it_stopped(tmp_path):
    from sqlalchemy import delete, select

    from api.settings import Settings
    from api.wiring import open_store
    from store.models import EvalCaseRow, EvalRunRow

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MITIGATE_", "OPENAI_"))}
    env |= {"MITIGATE_DATABASE_URL": f"sqlite:///{tmp_path}/r.db", "MITIGATE_STATE_DIR": str(tmp_path / "state")}

    def run(*extra: str) -> dict:
        done = subprocess.run(
            [sys.executable, "-m", "api.cli", "eval", "run", "--dataset", str(DATASET), "--json", *extra],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    full = run()
    sessions = open_store(Settings(database_url=f"sqlite:///{tmp_path}/r.db")).sessions
    with sessions.begin() as session:  # as if the process had died after 100 cases
        kept = session.scalars(
            select(EvalCaseRow.case_id)
            .where(EvalCaseRow.eval_run_id == full["eval_run_id"])
            .order_by(EvalCaseRow.id)
            .limit(100)
        ).all()
        session.execute(
            delete(EvalCaseRow).where(EvalCaseRow.eval_run_id == full["eval_run_id"], EvalCaseRow.case_id.not_in(kept))
        )
        session.get(EvalRunRow, full["eval_run_id"]).status = "running"
    resumed = run("--resume", full["eval_run_id"])
    assert resumed["eval_run_id"] == full["eval_run_id"] and resumed["n"] == 156
    for metric in ("category_accuracy", "mitigation_accuracy", "m5_precision"):
        assert resumed[metric] == full[metric]
    with sessions() as session:
        assert session.get(EvalRunRow, full["eval_run_id"]).status == "completed"
        count = len(session.scalars(select(EvalCaseRow).where(EvalCaseRow.eval_run_id == full["eval_run_id"])).all())
    assert count == 156  # nothing replayed twice
    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "api.cli",
            "eval",
            "run",
            "--dataset",
            str(DATASET),
            "--split",
            "test",
            "--resume",
            full["eval_run_id"],
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode == 2 and "another dataset or configuration" in refused.stderr


def _m5_cases(decided_right: int, decided_wrong: int, missed: int, other: int) -> list[Case]:
    """Cases whose truth is M5 (decided right or missed) and cases that are not (some wrongly M5)."""
    m5, m1 = {"category": "A3", "mitigation": "M5"}, {"category": "A3", "mitigation": "M1"}
    cases = [Case(f"r{i}", m5, m5) for i in range(decided_right)]
    cases += [Case(f"w{i}", m1, m5) for i in range(decided_wrong)]
    cases += [Case(f"m{i}", m5, m1) for i in range(missed)]
    cases += [Case(f"o{i}", m1, m1) for i in range(other)]
    return cases


def _gated(baseline: list[Case], candidate: list[Case]) -> list[str]:
    from evals.compare import gate

    by_id = {c.id: c for c in candidate}
    paired = [by_id.get(c.id, Case(c.id, c.expected, {"category": "A3", "mitigation": "M1"})) for c in baseline]
    return gate(compare(baseline, paired, resamples=100))


def test_the_gate_judges_no_action_by_its_exact_lower_bound():
    shown = _m5_cases(30, 0, 0, 30)  # 30 of 30: exact lower bound 0.884
    never = [Case(c.id, c.expected, {**c.predicted, "mitigation": "M1"}) for c in shown]
    assert any("never decides M5" in r for r in _gated(shown, never))
    few = _m5_cases(5, 0, 25, 30)  # 5 of 5 right, but 0.478 cannot show 0.85 where the baseline could
    assert any("exact 95% lower bound 0.478" in r for r in _gated(shown, few))
    small = _m5_cases(5, 0, 0, 5)
    assert _gated(small, small) == []  # too few cases for either: no verdict on precision
    wrong = [Case(c.id, c.expected, {**c.predicted, "mitigation": "M5"}) if c.id == "o0" else c for c in small]
    assert any("M5 precision 5/6" in r for r in _gated(small, wrong))  # a wrong "no action" it cannot excuse
