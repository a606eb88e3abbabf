"""Postmortem retrieval, offline: parsing, idempotent ingestion, hybrid search, time and self filters."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from agent.schemas import Incident
from tests.conftest import ROOT
from tools.embeddings import MiniLMEmbedder
from tools.postmortem_format import PostmortemError, parse_postmortem
from tools.postmortems import PostmortemIndex, PostmortemRetriever

SAMPLES = ROOT / "tests" / "data" / "postmortems"


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    return MiniLMEmbedder()


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    target = tmp_path / "postmortems"
    shutil.copytree(SAMPLES, target)
    return target


@pytest.fixture
def index(tmp_path: Path, corpus: Path, embedder: MiniLMEmbedder) -> PostmortemIndex:
    built = PostmortemIndex(tmp_path / "state", embedder=embedder)
    built.ingest(corpus)
    return built


def test_embeddings_are_unit_vectors_and_paraphrases_are_closer(embedder):
    vectors = embedder.embed(
        [
            "streams are cut off after sixty seconds with HTTP 408",
            "long generations get dropped by the gateway idle timeout",
            "a GPU fell off the PCIe bus on one node",
        ]
    )
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


def test_parse_and_chunk_by_section():
    postmortem = parse_postmortem((SAMPLES / "pm-408-keepalive.md").read_text(), "pm-408-keepalive.md")
    assert postmortem.meta.id == "PM-001" and postmortem.meta.mitigation == "M1"
    chunks = postmortem.chunks()
    assert [c.section for c in chunks] == ["summary", "impact", "root cause", "mitigation", "follow-ups"]
    assert all(c.text.startswith(postmortem.meta.title) for c in chunks)


def test_long_sections_are_split_on_paragraphs():
    body = "\n\n".join(f"paragraph {i} " + "word " * 60 for i in range(8))
    front = "---\nid: X\ntitle: T\ndate: 2025-01-01\ncategory: A3\nsubcategory: crash\nmitigation: M4\n---\n"
    text = f"{front}## Summary\n{body}\n"
    chunks = parse_postmortem(text).chunks()
    assert len(chunks) > 1 and all(len(c.text) <= 800 + len("T. ") for c in chunks)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("no front matter", "no YAML front matter"),
        ("---\ntitle: [unclosed\n---\n## Summary\nx\n", "not valid YAML"),
        (
            "---\nid: X\ntitle: T\ndate: 2025-01-01\ncategory: A9\nsubcategory: s\nmitigation: M1\n---\n"
            "## Summary\nx\n",
            "category",
        ),
        (
            "---\nid: X\ntitle: T\ndate: 2025-01-01\ncategory: A1\nsubcategory: s\nmitigation: M1\n---\nno headings\n",
            "no '## Section' headings",
        ),
    ],
)
def test_bad_files_name_the_reason(text, reason):
    with pytest.raises(PostmortemError, match=reason):
        parse_postmortem(text, "bad.md")


def test_ingestion_is_idempotent_and_updates_changed_files(tmp_path, corpus, embedder):
    index = PostmortemIndex(tmp_path / "state", embedder=embedder)
    first = index.ingest(corpus)
    assert sorted(first.added) == ["PM-001", "PM-002", "PM-003", "PM-004", "PM-005"] and first.failed == []
    chunks = index.collection.count()
    second = index.ingest(corpus)
    assert second.added == [] and second.updated == [] and second.unchanged == 5
    assert index.collection.count() == chunks
    changed = corpus / "pm-transient.md"
    changed.write_text(changed.read_text().replace("four minutes", "six minutes"))
    third = index.ingest(corpus)
    assert third.updated == ["PM-004"] and third.unchanged == 4 and index.collection.count() == chunks
    assert "six minutes" in index.search("TTFT blip certificate rotation", 1)[0]["snippet"]


def test_a_broken_file_is_reported_and_the_rest_ingested(tmp_path, corpus, embedder):
    shutil.copy(ROOT / "tests" / "data" / "postmortems-broken" / "broken.md", corpus / "broken.md")
    report = PostmortemIndex(tmp_path / "state", embedder=embedder).ingest(corpus)
    assert len(report.added) == 5
    assert len(report.failed) == 1 and report.failed[0][0].endswith("broken.md")
    assert "YAML" in report.failed[0][1]


@pytest.mark.parametrize("mode", ["hybrid", "vector", "lexical"])
def test_search_finds_the_matching_postmortem(index, mode):
    results = index.search("HTTP 408 streaming generations cut off by gateway idle timeout", 3, mode=mode)
    assert results[0]["id"] == "PM-001" and results[0]["mitigation"] == "M1"
    assert {"title", "score", "snippet", "category", "subcategory", "section"} <= set(results[0])


def test_time_filter_and_self_exclusion(index):
    assert [r["id"] for r in index.search("408 streaming timeouts", 5, before=datetime(2025, 3, 1))] == []
    seen = [r["id"] for r in index.search("408 streaming timeouts", 5, before=datetime(2025, 3, 15))]
    assert set(seen) <= {"PM-001", "PM-002"} and "PM-001" in seen
    assert "PM-001" not in [r["id"] for r in index.search("408 streaming timeouts", 5, exclude_ids={"INC-001"})]
    assert [r["category"] for r in index.search("anything at all", 5, where={"category": "A1"})] == ["A1"]


def test_retriever_uses_the_incident_start_and_id(index):
    retriever = PostmortemRetriever(index)
    incident = Incident(
        id="INC-001", title="408s on streaming, idle connections dropped", started_at=datetime(2025, 6, 1)
    )
    assert "PM-001" not in [p["id"] for p in retriever.search(incident, 5)]  # its own postmortem
    early = Incident(id="INC-9", title="XID 79 on a GPU node", started_at=datetime(2025, 3, 5))
    assert [p["id"] for p in retriever.search(early, 5)] == ["PM-001"]  # PM-002 is dated after the start


def test_cli_ingest_is_idempotent_reports_bad_files_and_search_prints_json(tmp_path, corpus):
    import json
    import os
    import subprocess
    import sys

    shutil.copy(ROOT / "tests" / "data" / "postmortems-broken" / "broken.md", corpus / "broken.md")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MITIGATE_", "OPENAI_"))}
    env |= {"HF_HUB_OFFLINE": "1", "MITIGATE_STATE_DIR": str(tmp_path / "state"), "PYTHONPATH": str(ROOT)}

    def mitigate(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "api.cli", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )

    first = mitigate("postmortems", "ingest", str(corpus))
    assert first.returncode == 0 and "added 5" in first.stdout and "failed 1" in first.stdout
    assert "broken.md" in first.stderr and "YAML" in first.stderr
    second = mitigate("postmortems", "ingest", str(corpus))
    assert "added 0, updated 0, unchanged 5" in second.stdout
    found = json.loads(mitigate("postmortems", "search", "GPU XID fell off the bus", "-k", "2", "--json").stdout)
    assert found[0]["id"] == "PM-002" and len(found) == 2


@pytest.fixture
def chroma_server(tmp_path: Path):  # type: ignore[no-untyped-def]
    import os
    import socket
    import subprocess
    import sys

    import httpx

    from tests.waiting import until

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    chroma = Path(sys.executable).parent / "chroma"
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
    server = subprocess.Popen(
        [str(chroma), "run", "--host", "127.0.0.1", "--port", str(port), "--path", str(tmp_path / "chroma-server")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def up() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        until(up, "the Chroma server's heartbeat", deadline_s=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.chroma_server
def test_the_same_index_works_against_a_chroma_server(tmp_path, corpus, embedder, chroma_server):
    index = PostmortemIndex(tmp_path / "state", chroma_url=chroma_server, embedder=embedder)
    assert len(index.ingest(corpus).added) == 5
    chunks = index.collection.count()
    assert index.search("GPU fell off the bus, XID 79", 1, mode="vector")[0]["id"] == "PM-002"
    assert index.ingest(corpus).unchanged == 5 and index.collection.count() == chunks


def test_retrieval_eval_counts_same_kind_precedents_before_the_incident(index):
    from evals.dataset import parse_case
    from evals.retrieval import retrieval_eval

    cases = [
        parse_case(
            {
                "id": "E-1",
                "title": "streams cut off by the gateway idle timer, HTTP 408",
                "labels": {"category": "A3", "subcategory": "timeout", "mitigation": "M1"},
                "timeline": {"started_at": "2025-06-01T00:00:00Z"},
            }
        ),
        parse_case(
            {
                "id": "E-2",
                "title": "streams cut off by the gateway idle timer, HTTP 408",
                "labels": {"category": "A3", "subcategory": "timeout", "mitigation": "M1"},
                "timeline": {"started_at": "2025-01-01T00:00:00Z"},
            }
        ),  # before every postmortem
    ]
    result = retrieval_eval(index, cases)
    assert result["n"] == 2
    for mode in ("hybrid", "vector", "lexical"):
        assert result[mode]["subcategory"]["hit@1"] == 0.5  # E-1 finds PM-001 first; E-2 sees no history
        assert result[mode]["subcategory"]["mrr"] == 0.5
