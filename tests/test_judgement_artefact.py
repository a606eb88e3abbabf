"""The model artefact and its training: a missing, corrupt or stale artefact is named with the command
that rebuilds it and triage goes on with the rulebook alone, saying so; a labelled source with an
unknown label or a duplicate id trains nothing; a trained artefact carries what it was trained on."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agent.context import MemoryRecorder
from agent.graph import build_graph
from agent.judgement import DEFAULT_ARTEFACT, ModelArtefactError, load_judgement
from agent.rulebook import load_rulebook
from api.app import create_app
from api.settings import Settings
from api.wiring import load_model, make_context
from tests.conftest import ROOT

MITIGATE = [sys.executable, "-m", "api.cli"]


@pytest.fixture
def artefact(tmp_path: Path) -> Path:
    """A copy of the committed-by-setup artefact that a test may break."""
    target = tmp_path / "model" / "judgement.json"
    target.parent.mkdir()
    shutil.copy(DEFAULT_ARTEFACT, target)
    shutil.copy(DEFAULT_ARTEFACT.with_suffix(".npz"), target.with_suffix(".npz"))
    return target


def _break(artefact: Path, how: str) -> None:
    if how == "missing":
        artefact.with_suffix(".npz").unlink()
    elif how == "corrupt":
        data = bytearray(artefact.with_suffix(".npz").read_bytes())
        data[len(data) // 2] ^= 0xFF
        artefact.with_suffix(".npz").write_bytes(bytes(data))
    elif how == "stale":
        meta = json.loads(artefact.read_text())
        meta["rulebook_digest"] = "0" * 16
        artefact.write_text(json.dumps(meta))


@pytest.mark.parametrize(("how", "said"), [("missing", "is missing"), ("corrupt", "is corrupt"), ("stale", "stale")])
def test_a_broken_artefact_is_named_with_the_command_that_rebuilds_it(artefact, how, said):
    load_judgement(artefact, load_rulebook())  # the intact copy loads
    _break(artefact, how)
    with pytest.raises(ModelArtefactError, match=said) as error:
        load_judgement(artefact, load_rulebook())
    assert "mitigate model train" in str(error.value)


def test_without_a_usable_model_the_rulebook_answers_alone_and_every_report_says_so(artefact, tmp_path):
    _break(artefact, "stale")
    load_model.cache_clear()
    settings = Settings(model_path=artefact, database_url=f"sqlite:///{tmp_path}/m.db", state_dir=tmp_path / "s")
    context = make_context(settings, MemoryRecorder())
    assert context.judgement is None and "stale" in (context.judgement_problem or "")
    incident = {"id": "DEG-1", "title": "HTTP 408 on streams", "description": "long streams cut at 60 s, still"}
    report = build_graph().invoke({"run_id": "r", "incident": incident}, context=context)["report"]
    assert report["engine"] == "rulebook" and report["model"] is None
    assert any(note.startswith("rulebook alone:") and "stale" in note for note in report["notes"])
    load_model.cache_clear()


def test_readyz_reports_a_degraded_judgement_and_stays_ready(artefact, tmp_path):
    _break(artefact, "corrupt")
    load_model.cache_clear()
    settings = Settings(model_path=artefact, database_url=f"sqlite:///{tmp_path}/m.db", state_dir=tmp_path / "s")
    with TestClient(create_app(settings)) as client:
        body = client.get("/readyz").json()
    assert body["ready"] is True
    assert body["checks"]["judgement"].startswith("degraded:") and "corrupt" in body["checks"]["judgement"]
    load_model.cache_clear()


def _lines(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def _row(n: int, source: str, **labels: Any) -> dict[str, Any]:
    timeout = n % 2 == 1
    return {
        "id": f"{source}-{n}",
        "source": source,
        "title": "HTTP 408 on long streams" if timeout else "Xid 79 on node gpu-7, pods failing",
        "description": "recovered by itself, clean since" if n % 3 == 0 else "",
        "labels": {
            "category": "A3" if timeout else "A1",
            "subcategory": "timeout" if timeout else "bad_node",
            "mitigation": "M5" if n % 3 == 0 else ("M1" if timeout else "M4"),
            **labels,
        },
    }


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"labels": {"category": "A5", "subcategory": None, "mitigation": "M1"}}, "labels.category 'A5'"),
        ({"labels": {"category": "A3", "subcategory": "bad_node", "mitigation": "M1"}}, "belongs to A1"),
        ({"labels": {"category": "A3", "subcategory": "timeout", "mitigation": "M9"}}, "labels.mitigation 'M9'"),
        ({"id": "x-1"}, "duplicate id 'x-1'"),
    ],
)
def test_a_source_with_an_unknown_label_or_a_duplicate_id_trains_nothing(tmp_path, bad, message):
    rows = [_row(n, "x") for n in range(1, 5)] + [_row(n, "y") for n in range(1, 5)]
    rows.insert(3, {**_row(9, "x"), **bad})
    source = tmp_path / "labelled.jsonl"
    source.write_text(_lines(rows))
    out = tmp_path / "m" / "judgement.json"
    done = subprocess.run(
        [*MITIGATE, "model", "train", "--sources", str(source), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert f"{source}:4:" in done.stderr and message in done.stderr and "nothing was trained" in done.stderr
    assert not out.exists() and not out.with_suffix(".npz").exists()


def test_a_trained_artefact_says_what_it_was_trained_on(tmp_path):
    """Two small sources of two writers: the artefact loads, judges, and records data hashes, the
    rulebook, the features and out-of-source figures; `model check` sees when a source changes."""
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text(_lines([_row(n, "a") for n in range(1, 13)]))
    b.write_text(_lines([_row(n, "b") for n in range(1, 13)]))
    out = tmp_path / "m" / "judgement.json"
    env_model = {"MITIGATE_MODEL_PATH": str(out)}
    done = subprocess.run(
        [*MITIGATE, "model", "train", "--sources", str(a), str(b), "--out", str(out), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    meta = json.loads(done.stdout)
    rulebook = load_rulebook()
    assert meta["rulebook_digest"] == rulebook.digest and set(meta["data"]) == {str(a), str(b)}
    assert meta["n_cases"] == 24 and set(meta["cv"]) == {"pooled", "a", "b"}
    assert meta["features"]["embedding_components"] > 0
    judgement = load_judgement(out, rulebook)
    assert judgement.category.classes == ("A1", "A3") and judgement.no_action.classes == ("other", "M5")
    import os

    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MITIGATE_")}, **env_model}
    check = [*MITIGATE, "model", "check", "--sources", str(a), str(b)]
    assert subprocess.run(check, cwd=ROOT, env=env, capture_output=True, timeout=120).returncode == 0
    b.write_text(_lines([_row(n, "b") for n in range(1, 12)]))  # a writer's set changed
    changed = subprocess.run(check, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert changed.returncode == 1 and str(b) in changed.stderr and "mitigate model train" in changed.stderr
