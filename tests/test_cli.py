"""The `mitigate` command as a user runs it: a real process, a real SQLite file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

MITIGATE = [sys.executable, "-m", "api.cli"]


def _run(*args: str, db: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MITIGATE_", "OPENAI_"))}
    env["MITIGATE_DATABASE_URL"] = f"sqlite:///{db}"
    env["MITIGATE_STATE_DIR"] = str(db.parent / "state")  # never the developer's own postmortem index
    return subprocess.run(
        [*MITIGATE, *args], cwd=ROOT, env=env, input=stdin, capture_output=True, text=True, timeout=120
    )


def test_triage_of_the_408_example_proposes_the_liveness_template(tmp_path):
    done = _run("triage", "examples/timeout-408-streaming.json", "--json", db=tmp_path / "m.db")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    for key in (
        "incident_id",
        "category",
        "subcategory",
        "confidence",
        "mitigation",
        "status",
        "precedents",
        "actions",
    ):
        assert key in report
    assert (report["category"], report["subcategory"]) == ("A3", "timeout")
    assert report["plan"]["operation"] == "apply_connection_liveness_template"
    assert report["status"] == "proposed" and report["actions"][0]["status"] == "proposed"
    notes = " ".join(report["notes"])
    assert "not executed: no cluster configured" in notes and "no postmortem index" in notes


def test_triage_reads_stdin_and_stores_the_run(tmp_path):
    incident = json.loads((ROOT / "examples" / "exhaustion-429-saturated.json").read_text())
    done = _run("triage", "-", "--json", db=tmp_path / "m.db", stdin=json.dumps(incident))
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["run_id"]
    from api.settings import Settings
    from api.wiring import open_store

    stored = open_store(Settings(database_url=f"sqlite:///{tmp_path / 'm.db'}")).recorder.run(run_id)
    assert stored is not None and stored["status"] == "proposed"
    assert [s["node"] for s in stored["steps"]] == [
        "intake",
        "investigate",  # the store's history of this alert (no cluster, no Prometheus: their gaps in the data)
        "retrieve",
        "classify",
        "plan",
        "preflight",
        "guard",
        "act",
        "report",
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not JSON"),
        ("[1, 2]", "must hold one incident (a JSON or YAML object)"),
        ('{"title": "x", "descripton": "slow"}', "unknown key 'descripton' (did you mean 'description'?)"),
        ('{"id": "x", "signals": {"http_408_rate": "high"}}', "must be a number"),
    ],
)
def test_bad_incidents_get_a_clear_error_and_store_nothing(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    done = _run("triage", str(path), db=tmp_path / "m.db")
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "m.db").exists()


def test_missing_file_is_a_clear_error(tmp_path):
    done = _run("triage", str(tmp_path / "nope.json"), db=tmp_path / "m.db")
    assert done.returncode == 2 and "No such file" in done.stderr


def test_resume_of_an_unknown_run_is_a_clear_error(tmp_path):
    done = _run("resume", "does-not-exist", db=tmp_path / "m.db")
    assert done.returncode == 2 and "no run does-not-exist" in done.stderr


def test_help_is_fast_and_does_not_import_the_graph():
    started = time.perf_counter()
    done = subprocess.run([*MITIGATE, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "triage" in done.stdout
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, api.cli; api.cli.build_parser(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('langgraph', 'sqlalchemy', 'openai', 'pydantic')))",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.stdout.strip() == "[]"
    assert time.perf_counter() - started < 30  # sanity only; the real figure is in bench/triage.py


def test_eval_run_prints_the_metrics_object(tmp_path):
    lines = [
        {
            "id": "E-1",
            "title": "HTTP 408 on streams, still failing",
            "signals": {"http_408_rate": 0.03},
            "labels": {"category": "A3", "subcategory": "timeout", "mitigation": "M1"},
            "resolution": "applied keep-alive template",
        },
        {
            "id": "E-2",
            "title": "XID 79 on node aks-gpu-3, still failing",
            "labels": {"category": "A1", "subcategory": "bad_node", "mitigation": None},
        },
    ]
    dataset = tmp_path / "d.jsonl"
    dataset.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    done = _run("eval", "run", "--dataset", str(dataset), "--json", db=tmp_path / "m.db")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    for key in (
        "n",
        "category_accuracy",
        "category_kappa",
        "category_macro_f1",
        "subcategory_accuracy",
        "mitigation_accuracy",
        "m5_precision",
        "m5_recall",
        "abstain_rate",
    ):
        assert key in out
    assert out["n"] == 2 and out["category_accuracy"] == 1.0 and out["mitigation_accuracy"] == 1.0
    assert out["eval_run_id"]
    table = _run("eval", "run", "--dataset", str(dataset), "--no-store", db=tmp_path / "m.db")
    assert table.returncode == 0 and "category_accuracy" in table.stdout and "Category confusion" in table.stdout


def test_eval_run_rejects_a_broken_dataset_with_its_line(tmp_path):
    dataset = tmp_path / "d.jsonl"
    dataset.write_text('{"id": "ok-1", "title": "x"}\n{"title": "no id"}\n')
    done = _run("eval", "run", "--dataset", str(dataset), db=tmp_path / "m.db")
    assert done.returncode == 2 and "d.jsonl:2" in done.stderr


def test_a_paused_run_shows_its_category_plan_risk_and_dry_run_and_approving_needs_a_personal_token(tmp_path):
    from tests.approvers import TOKENS, approvers_file

    db = tmp_path / "m.db"
    incident = tmp_path / "node.json"
    incident.write_text(
        json.dumps(
            {
                "id": "CLI-NODE",
                "title": "XID 79 on node aks-gpu-7; its pods fail, still failing",
                "alert": {"labels": {"alertname": "GPUXid", "namespace": "llm-serving", "node": "aks-gpu-7"}},
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MITIGATE_", "OPENAI_"))}
    started = subprocess.run(
        [sys.executable, "-m", "tests.proc_run", "start", f"sqlite:///{db}", str(tmp_path / "c.log"), str(incident)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    run_id = json.loads(started.stdout.strip().splitlines()[-1])["run_id"]
    shown = _run("runs", "show", run_id, "--json", db=db)
    assert shown.returncode == 0, shown.stderr
    run = json.loads(shown.stdout)
    assert run["status"] == "awaiting_approval" and (run["category"], run["subcategory"]) == ("A1", "bad_node")
    report = run["report"]
    assert report["plan"]["operation"] == "cordon_and_evict" and report["risk"] == "high"
    assert report["dry_run"]["status"] == "dry-run-ok" and report["target_check"]["exists"] is True
    refused = _run("approve", run_id, db=db)  # no personal token: nobody to approve as
    assert refused.returncode == 2 and "MITIGATE_APPROVER_TOKEN" in refused.stderr
    token_file = tmp_path / "token"
    token_file.write_text(TOKENS["alice"])
    files = approvers_file(tmp_path)
    env_file = {"MITIGATE_APPROVERS_FILE": str(files)}
    done = subprocess.run(
        [*MITIGATE, "approve", run_id, "--token-file", str(token_file), "--json"],
        cwd=ROOT,
        env=env | env_file | {"MITIGATE_DATABASE_URL": f"sqlite:///{db}", "MITIGATE_STATE_DIR": str(tmp_path / "s")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    # alice is known, but this CLI has no cluster: it says so instead of resuming into a mere proposal.
    assert done.returncode == 2 and "cannot act on a cluster" in done.stderr
    from api.settings import Settings
    from api.wiring import open_store
    from store.approval_audit import attempts_for

    attempts = attempts_for(open_store(Settings(database_url=f"sqlite:///{db}")).sessions, run_id)
    assert [(a["person"], a["via"], a["outcome"]) for a in attempts] == [
        (None, "cli", "refused"),
        ("alice", "cli", "refused"),
    ]
    assert open_store(Settings(database_url=f"sqlite:///{db}")).recorder.run(run_id)["status"] == "awaiting_approval"
