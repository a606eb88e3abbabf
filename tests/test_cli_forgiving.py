"""The CLI at 3 a.m., as a real process: every mistake of issue #16 exits 2 with a message naming the
setting or field and the doc to read, no traceback, and nothing stored; what a tired person types (bare
text, YAML, stdin, no id) is understood; state is the same from any directory; ids can be shortened."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

EXAMPLE = ROOT / "examples" / "timeout-408-streaming.json"


def _env(state: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MITIGATE_", "OPENAI_"))}
    return env | {"MITIGATE_STATE_DIR": str(state), "MITIGATE_ENGINE": "rulebook", **extra}


def _run(state: Path, *args: str, stdin: str | None = None, cwd: Path = ROOT, **env: str) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        cwd=cwd,
        env=_env(state, **env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=180,
    )


def _refused(done: Any, *said: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr and done.stderr.startswith("mitigate: error: "), done.stderr
    for words in said:
        assert words in done.stderr, done.stderr


# ---- every mistake: exit 2, the message, nothing stored ------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "said"),
    [
        (["--engine", "llm"], {}, ["MITIGATE_LLM_BASE_URL", "README.md#configuration"]),
        ([], {"MITIGATE_ENGINE": "llm"}, ["MITIGATE_LLM_BASE_URL"]),
        ([], {"MITIGATE_SLA_TARGET": "high"}, ["MITIGATE_SLA_TARGET='high'", "valid number", "README.md"]),
        ([], {"MITIGATE_KUBECONFIG": "/nonexistent/kubeconfig"}, ["MITIGATE_KUBECONFIG=/nonexistent/kubeconfig"]),
        ([], {"MITIGATE_PROMETHEUS_WINDOW": "five minutes"}, ["MITIGATE_PROMETHEUS_WINDOW"]),
    ],
)
def test_a_wrong_setting_names_its_variable_and_stores_nothing(tmp_path, args, env, said):
    done = _run(tmp_path / "state", "triage", str(EXAMPLE), *args, **env)
    _refused(done, *said)
    assert not (tmp_path / "state" / "mitigate.db").exists()


def test_an_unusable_kubeconfig_is_a_message(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("clusters: [\n")
    done = _run(tmp_path / "state", "triage", str(EXAMPLE), MITIGATE_KUBECONFIG=str(kubeconfig))
    _refused(done, "is not a usable kubeconfig", "docs/cluster-tools.md")
    assert not (tmp_path / "state" / "mitigate.db").exists()


def test_an_unreachable_postgresql_is_a_message_without_its_password(tmp_path):
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    url = f"postgresql://dri:hunter2@127.0.0.1:{port}/mitigate"
    for args in (["triage", str(EXAMPLE)], ["runs", "list"], ["db", "upgrade"]):
        done = _run(tmp_path / "state", *args, MITIGATE_DATABASE_URL=url)
        _refused(done, "cannot reach the database at postgresql://dri:***@127.0.0.1", "MITIGATE_DATABASE_URL")
        assert "hunter2" not in done.stderr + done.stdout


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ('{"title": "slow", "descripton": "p95 up"}', ["unknown key 'descripton' (did you mean 'description'?)"]),
        ("titel: slow\ndescription: p95 up\n", ["unknown key 'titel' (did you mean 'title'?)"]),
        ('{"id": "x", "alert": {"lables": {}}}', ["unknown key 'alert.lables' (did you mean 'labels'?)"]),
        ("{not json", ["is not JSON"]),
        ('{"id": "x", "signals": {"http_408_rate": "high"}}', ["signals", "must be a number"]),
        ("", ["is empty"]),
    ],
)
def test_a_wrong_incident_points_to_the_format_and_stores_nothing(tmp_path, text, said):
    done = _run(tmp_path / "state", "triage", "-", stdin=text)
    _refused(done, *said, "docs/datasets.md")
    assert not (tmp_path / "state" / "mitigate.db").exists()


def test_json_into_a_closed_pipe_ends_quietly(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "triage", str(EXAMPLE), "--json"],
        cwd=ROOT,
        env=_env(tmp_path / "state"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # `| head -c 0`: the reader is gone before the report is written
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0 and b"Traceback" not in err and b"BrokenPipe" not in err


def test_bare_mitigate_prints_help():
    done = subprocess.run([sys.executable, "-m", "api.cli"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "usage: mitigate" in done.stdout
    for command in ("triage", "incidents", "runs", "eval", "postmortems"):
        assert command in done.stdout


def test_a_misspelled_variable_is_warned_about(tmp_path):
    done = _run(tmp_path / "state", "runs", "list", MITIGATE_SLA_TARGT="0.9")
    assert done.returncode == 0
    assert "MITIGATE_SLA_TARGT is not a mitigate setting (did you mean MITIGATE_SLA_TARGET?)" in done.stderr
    (tmp_path / ".env").write_text("MITIGATE_API_TOKN=x\n")
    done = _run(tmp_path / "state", "runs", "list", cwd=tmp_path)
    assert "MITIGATE_API_TOKN is not a mitigate setting (did you mean MITIGATE_API_TOKEN?)" in done.stderr


# ---- what a tired person types is understood -------------------------------------------------


@pytest.mark.parametrize(
    ("text", "title"),
    [
        ("HTTP 408 on streaming for llama-70b: streams cut off after 60 s\nstill failing", "HTTP 408 on streaming"),
        ("title: 408s on llama-70b streams\nsignals:\n  http_408_rate: 0.03\n", "408s on llama-70b streams"),
        ('{"title": "408s on llama-70b streams", "signals": {"http_408_rate": 0.03}}', "408s on llama-70b streams"),
    ],
)
def test_text_yaml_or_json_without_an_id_is_triaged(tmp_path, text, title):
    done = _run(tmp_path / "state", "triage", "-", "--json", stdin=text)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["incident_id"].startswith("cli-") and f"no id given: using {report['incident_id']}" in done.stderr
    assert (report["category"], report["subcategory"]) == ("A3", "timeout")
    listed = json.loads(_run(tmp_path / "state", "incidents", "list", "--json").stdout)
    assert [i["id"] for i in listed] == [report["incident_id"]] and listed[0]["title"].startswith(title)


def test_an_alertmanager_payload_is_triaged(tmp_path):
    payload = {
        "version": "4",
        "groupKey": "g",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "startsAt": "2026-11-24T10:00:00Z",
                "labels": {"alertname": "GatewayHigh408Rate", "namespace": "llm-serving", "deployment": "llama-70b"},
                "annotations": {"summary": "408 rate 2.7% on streaming completions"},
            }
        ],
    }
    done = _run(tmp_path / "state", "triage", "-", "--json", stdin=json.dumps(payload))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["incident_id"].startswith("am-") and report["subcategory"] == "timeout"
    assert "read as an Alertmanager webhook payload" in done.stderr


# ---- state in one place; finding things again ----------------------------------------------------


def test_state_is_the_same_from_any_directory_and_ids_can_be_shortened(tmp_path):
    home = tmp_path / "xdg"
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MITIGATE_", "OPENAI_"))} | {
        "XDG_STATE_HOME": str(home),
        "MITIGATE_ENGINE": "rulebook",
    }

    def cli(*args: str, cwd: Path = ROOT) -> Any:
        cmd = [sys.executable, "-m", "api.cli", *args]
        env_path = env | {"PYTHONPATH": str(ROOT)}
        return subprocess.run(cmd, cwd=cwd, env=env_path, capture_output=True, text=True, timeout=180)

    first = cli("triage", str(EXAMPLE), "--json")
    assert first.returncode == 0, first.stderr
    assert "no postmortem index in" in first.stderr and "mitigate postmortems ingest data/postmortems" in first.stderr
    run_id = json.loads(first.stdout)["run_id"]
    assert (home / "mitigate" / "mitigate.db").exists() and not (elsewhere / ".mitigate").exists()
    listed = cli("runs", "list", cwd=elsewhere)
    assert listed.returncode == 0 and run_id in listed.stdout  # the same history from another directory
    shown = cli("runs", "show", run_id[:8], "--json", cwd=elsewhere)
    assert shown.returncode == 0 and json.loads(shown.stdout)["id"] == run_id
    incident = json.loads(first.stdout)["incident_id"]
    timeline = cli("incidents", "show", incident[:6], cwd=elsewhere)
    assert timeline.returncode == 0 and f"run {run_id}" in timeline.stdout
    assert not (elsewhere / ".mitigate").exists()
    missing = cli("runs", "show", "ffffffff", cwd=elsewhere)
    _refused(missing, "no run ffffffff")


def test_waiting_runs_are_listed_and_a_decision_on_a_run_that_is_not_waiting_is_refused(tmp_path):
    from tests.approvers import TOKENS, approvers_file

    state = tmp_path / "state"
    done = _run(state, "triage", str(EXAMPLE), "--json")  # no cluster: proposed, not waiting
    run_id = json.loads(done.stdout)["run_id"]
    assert _run(state, "runs", "list", "--status", "waiting").stdout.strip() == "no runs match"
    assert run_id in _run(state, "runs", "list", "--status", "proposed").stdout
    env = {"MITIGATE_APPROVERS_FILE": str(approvers_file(tmp_path)), "MITIGATE_APPROVER_TOKEN": TOKENS["alice"]}
    for verb in ("reject", "approve"):
        refused = _run(state, verb, run_id[:10], **env)
        _refused(refused, f"run {run_id} is proposed, not waiting for an approval", "runs list --status waiting")


def test_eval_runs_are_listed_and_compared_by_prefix(tmp_path):
    state = tmp_path / "state"
    dataset = tmp_path / "d.jsonl"
    lines = [
        {"id": "E-1", "title": "HTTP 408 on streams, still failing", "labels": {"category": "A3", "mitigation": "M1"}},
        {"id": "E-2", "title": "XID 79 on node aks-gpu-3", "labels": {"category": "A1", "mitigation": None}},
    ]
    dataset.write_text("".join(json.dumps(line) + "\n" for line in lines))
    ids = []
    for label in ("first", "second"):
        done = _run(state, "eval", "run", "--dataset", str(dataset), "--label", label, "--json")
        assert done.returncode == 0, done.stderr
        ids.append(json.loads(done.stdout)["eval_run_id"])
    listed = _run(state, "eval", "list")
    rows = listed.stdout.splitlines()
    assert rows[1].split()[1] == ids[1] and rows[2].split()[1] == ids[0]  # newest first
    compared = _run(state, "eval", "compare", ids[0][:8], ids[1][:8], "--json")
    assert compared.returncode == 0, compared.stderr and json.loads(compared.stdout)["n"] == 2
