"""Slow work is never silent, and not repeated: ingest reports progress in a log (not a terminal), and
the retrieval eval keeps its index in the state directory and reuses it while the postmortems are
unchanged, saying which it did."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import ROOT

HISTORY = ROOT / "data" / "postmortems" / "history"


def _run(state: Path, *args: str) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MITIGATE_", "OPENAI_"))}
    env |= {"MITIGATE_STATE_DIR": str(state), "MITIGATE_ENGINE": "rulebook"}
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def _corpus(tmp_path: Path, n: int) -> Path:
    folder = tmp_path / "postmortems"
    folder.mkdir(exist_ok=True)
    for path in sorted(HISTORY.glob("*.md"))[:n]:
        shutil.copy(path, folder / path.name)
    return folder


def test_ingest_reports_progress_in_a_log(tmp_path):
    folder = _corpus(tmp_path, 6)
    done = _run(tmp_path / "state", "postmortems", "ingest", str(folder))
    assert done.returncode == 0, done.stderr
    assert "ingesting postmortems: 6/6 (100%)" in done.stderr  # stderr is a pipe here, not a terminal
    assert "added 6" in done.stdout and str(tmp_path / "state") in done.stdout


def test_the_retrieval_eval_reuses_its_index_while_the_postmortems_are_unchanged(tmp_path):
    folder = _corpus(tmp_path, 8)
    dataset = tmp_path / "d.jsonl"
    case = {
        "id": "R-1",
        "title": "429s on llama3-70b-chat after a launch, replicas at maxReplicas",
        "labels": {"category": "A1", "subcategory": "compute_capacity", "mitigation": "M2"},
        "timeline": {"started_at": "2026-01-01T00:00:00Z"},
    }
    dataset.write_text(json.dumps(case) + "\n")
    args = ("eval", "retrieval", "--dataset", str(dataset), "--postmortems", str(folder), "--json")
    first = _run(tmp_path / "state", *args)
    assert first.returncode == 0, first.stderr
    assert "indexed in" in first.stderr and "8 added or changed" in first.stderr
    second = _run(tmp_path / "state", *args)
    assert "reused the index in" in second.stderr and "8 postmortems unchanged" in second.stderr
    assert json.loads(second.stdout) == json.loads(first.stdout)
    (folder / sorted(p.name for p in folder.iterdir())[0]).unlink()  # a changed corpus is brought up to date
    third = _run(tmp_path / "state", *args)
    assert "indexed in" in third.stderr and json.loads(third.stdout)["postmortems"] == 7
