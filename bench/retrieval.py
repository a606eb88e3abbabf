"""Benchmark of the postmortem index (tools/postmortems.py), offline.

Builds one index in a scratch directory and grows it to each size in --sizes (chunks), measuring:
- ingestion throughput (postmortems/s, chunks/s) through `PostmortemIndex.ingest` on Markdown files:
  parsing, embedding (MiniLM int8 on onnxruntime), Chroma and FTS5 writes; and the no-op re-ingestion;
- query latency p50/p95 per mode (hybrid, vector, lexical; each including the query embedding), for
  the graph's paths (hybrid + time filter + self-exclusion, for a live triage and for an eval
  replay), and for a bare Chroma vector query (query embedding + `collection.query`, no filter), with
  the ratio hybrid / bare Chroma from the same run;
- resident memory (current and peak RSS).

The corpus is synthetic: perturbed copies of the sample postmortems in tests/data/postmortems (words
swapped for synonyms, numbers, services and dates changed, extra sentences). Up to --embed-upto chunks
go through real ingestion; above that, chunks are stored with precomputed embeddings (vectors of real
chunks plus small noise, renormalised) in batches to keep the run short: that stage measures storage,
not embedding, and says so.

usage: .venv/bin/python bench/retrieval.py [--sizes 1000,10000,100000] [--queries 100] [--embed-upto 10000]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from tools.ingest_plan import Pending  # noqa: E402
from tools.postmortem_format import Postmortem, parse_postmortem, read_postmortem  # noqa: E402
from tools.postmortems import PostmortemIndex  # noqa: E402

SAMPLES = ROOT / "tests" / "data" / "postmortems"
TARGET_P95_MS = 50.0
TARGET_CHUNKS_PER_S = 100.0
SYNONYMS = {
    "gateway": ["proxy", "load balancer", "ingress", "edge"],
    "replicas": ["pods", "instances", "workers"],
    "replica": ["pod", "instance", "worker"],
    "node": ["host", "machine", "VM"],
    "errors": ["failures", "faults", "exceptions"],
    "cut off": ["dropped", "terminated", "truncated"],
    "spiked": ["jumped", "rose sharply", "surged"],
    "restarted": ["bounced", "recycled", "rolled"],
    "traffic": ["load", "demand", "request volume"],
    "deployment": ["service", "model deployment", "endpoint"],
    "engine": ["inference server", "runtime", "serving engine"],
    "stopped": ["ended", "ceased", "went away"],
}
EXTRA = [
    "The on-call engineer was paged by the {alert} alert at {hour}:{minute:02d} UTC.",
    "Customers in {region} noticed first and opened {n} support tickets.",
    "Dashboards for {service} showed the problem {n} minutes before the alert fired.",
    "A similar pattern was seen on {service} in an earlier quarter but was not written up.",
    "The fix was verified by watching the SLA dashboard for {n} minutes.",
    "The incident channel had {n} participants from three teams.",
]
SERVICES = ["gateway", "apim", "vllm", "llama3-8b", "llama3-70b", "mixtral-8x7b", "phi-3-mini", "router", "redis"]
REGIONS = ["eastus", "westeurope", "southeastasia", "brazilsouth", "japaneast"]
ALERTS = ["HighErrorRate", "TTFTHigh", "QueueDepth", "GPUXidError", "Http408Rate", "ModelNotFound"]
QUERIES = [
    "HTTP 408 on long streaming completions, the {gateway} idle timer drops them",
    "XID 79 on {node} gpu-{n}, two {replicas} failing with KV cache allocation errors",
    "429 throttling after a traffic spike, queues above {n} per pod",
    "time to first token spiked for a few minutes during certificate rotation",
    "tenants get 404 model not found after the egress proxy upgrade",
    "answers contain fragments of another conversation after the engine upgrade",
    "streams truncated mid-answer for an enterprise customer in {region}",
    "GPU fell off the bus, cordon the {node}",
]


def perturb(text: str, rng: random.Random) -> str:
    for word, options in SYNONYMS.items():
        if word in text and rng.random() < 0.5:
            text = text.replace(word, rng.choice(options))
    return re.sub(r"\b\d+\b", lambda m: str(max(1, int(int(m.group()) * rng.uniform(0.5, 2.0)))), text)


def extra(rng: random.Random) -> str:
    return rng.choice(EXTRA).format(
        alert=rng.choice(ALERTS),
        hour=rng.randrange(24),
        minute=rng.randrange(60),
        region=rng.choice(REGIONS),
        n=rng.randrange(2, 90),
        service=rng.choice(SERVICES),
    )


def synthetic(i: int, base: Postmortem, rng: random.Random) -> str:
    meta = base.meta
    day = datetime(2023, 1, 1, tzinfo=UTC) + timedelta(hours=rng.randrange(3 * 365 * 24))
    services = rng.sample(SERVICES, rng.randint(1, 3))
    sections = "\n".join(
        f"## {name.capitalize()}\n{perturb(body, rng)} {extra(rng)}\n" for name, body in base.sections.items()
    )
    return (
        f"---\nid: SYN-{i:06d}\ntitle: {perturb(meta.title, rng)} ({i})\ndate: {day.isoformat()}\n"
        f"services: [{', '.join(services)}]\ncategory: {meta.category}\nsubcategory: {meta.subcategory}\n"
        f"mitigation: {meta.mitigation}\nttm_hours: {round(rng.uniform(0.2, 60), 1)}\n---\n{sections}"
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def rss_mb() -> tuple[float, float]:
    current = 0.0
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                current = int(line.split()[1]) / 1024
    return current, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def log(message: str) -> None:
    print(message, flush=True)


class Corpus:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.bases = [read_postmortem(p) for p in sorted(SAMPLES.glob("*.md"))]
        self.next_id = 0

    def make(self) -> tuple[str, Postmortem]:
        i = self.next_id
        self.next_id += 1
        text = synthetic(i, self.bases[i % len(self.bases)], self.rng)
        return text, parse_postmortem(text, f"syn-{i:06d}.md")


def ingest_files(index: PostmortemIndex, corpus: Corpus, folder: Path, chunks_needed: int) -> None:
    folder.mkdir(parents=True)
    postmortems = chunks = 0
    while chunks < chunks_needed:
        text, pm = corpus.make()
        (folder / f"syn-{corpus.next_id - 1:06d}.md").write_text(text)
        postmortems += 1
        chunks += len(pm.chunks())
    log(f"  ingesting {postmortems} postmortem files ({chunks} chunks) through PostmortemIndex.ingest ...")
    last = [time.perf_counter()]

    def progress(done: int, total: int) -> None:
        if time.perf_counter() - last[0] > 10:
            last[0] = time.perf_counter()
            log(f"    {done}/{total} files")

    started = time.perf_counter()
    report = index.ingest(folder, progress)
    elapsed = time.perf_counter() - started
    assert len(report.added) == postmortems and report.chunks == chunks and not report.failed, report.failed[:3]
    verdict = "ok" if chunks / elapsed >= TARGET_CHUNKS_PER_S else "BELOW TARGET"
    log(
        f"  ingestion: {postmortems / elapsed:.1f} postmortems/s, {chunks / elapsed:.1f} chunks/s "
        f"({elapsed:.1f} s; parse + embed + Chroma + FTS5) -- target >= {TARGET_CHUNKS_PER_S:.0f} chunks/s: {verdict}"
    )
    started = time.perf_counter()
    again = index.ingest(folder)
    assert again.unchanged == postmortems and again.chunks == 0
    log(f"  re-ingestion of the same {postmortems} files (all unchanged): {time.perf_counter() - started:.2f} s")


def store_precomputed(index: PostmortemIndex, corpus: Corpus, chunks_needed: int) -> None:
    pool_texts: list[str] = []
    pool_source = [corpus.make()[1] for _ in range(240)]
    for pm in pool_source:
        pool_texts.extend(c.indexed_text for c in pm.chunks())
    log(f"  embedding a pool of {len(pool_texts)} real chunk texts for the precomputed vectors ...")
    pool = index.embedder.embed(pool_texts)
    rng = np.random.default_rng(7)
    log(
        f"  storing {chunks_needed} more chunks with PRECOMPUTED embeddings (pool vectors + noise): "
        "this measures Chroma + FTS5 storage, not embedding"
    )
    written = postmortems = 0
    started = last = time.perf_counter()
    while written < chunks_needed:
        batch: list[Pending] = []
        size = 0
        while size < 2000 and written + size < chunks_needed:
            _, pm = corpus.make()
            batch.append(Pending(f"/synthetic/{pm.meta.id}.md", pm, updated=False))
            size += len(pm.chunks())
        picks = rng.integers(0, len(pool), size)
        vectors = pool[picks] + rng.normal(0, 0.02, (size, pool.shape[1])).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        written += index._write(batch, vectors)
        postmortems += len(batch)
        if time.perf_counter() - last > 10:
            last = time.perf_counter()
            log(f"    {written}/{chunks_needed} chunks stored")
    elapsed = time.perf_counter() - started
    log(
        f"  storage with precomputed embeddings: {postmortems / elapsed:.0f} postmortems/s, "
        f"{written / elapsed:.0f} chunks/s ({elapsed:.1f} s; no embedding, not comparable to the target)"
    )


def measure_queries(index: PostmortemIndex, rng: random.Random, count: int) -> dict[str, list[float]]:
    queries = [
        rng.choice(QUERIES).format(
            gateway=rng.choice(["gateway", "proxy", "ingress"]),
            node=rng.choice(["node", "host"]),
            replicas=rng.choice(["replicas", "pods"]),
            region=rng.choice(REGIONS),
            n=rng.randrange(2, 300),
        )
        for _ in range(count)
    ]
    starts = [datetime(2023, 1, 1, tzinfo=UTC) + timedelta(days=rng.randrange(3 * 365)) for _ in queries]
    now = datetime.now(UTC)
    runs: dict[str, Callable[[str, datetime], object]] = {
        "hybrid": lambda q, _: index.search(q, 5),
        "vector": lambda q, _: index.search(q, 5, mode="vector"),
        "lexical": lambda q, _: index.search(q, 5, mode="lexical"),
        # What a live triage asks (before = its start, i.e. now: the whole history passes) and what an eval
        # replay asks (before = a past incident's start, uniform over the corpus' three years).
        "triage path": lambda q, _: index.search(q, 5, before=now, exclude_ids={"INC-1", "SYN-000001"}),
        "replay path": lambda q, start: index.search(q, 5, before=start, exclude_ids={"INC-1", "SYN-000001"}),
        "bare chroma": lambda q, _: index.collection.query(query_embeddings=index.embedder.embed([q]), n_results=5),
        "embedding only": lambda q, _: index.embedder.embed([q]),
    }
    for query in queries[:5]:  # warm-up
        for run in runs.values():
            run(query, starts[0])
    timings: dict[str, list[float]] = {name: [] for name in runs}
    for query, start in zip(queries, starts, strict=True):
        for name, run in runs.items():
            began = time.perf_counter()
            run(query, start)
            timings[name].append((time.perf_counter() - began) * 1000)
    return timings


def report_queries(chunks: int, timings: dict[str, list[float]], stored_with_precomputed: bool) -> None:
    log(f"  query latency over {len(timings['hybrid'])} queries, k=5 (each includes the query embedding):")
    for name, values in timings.items():
        log(f"    {name:<15} p50 {percentile(values, 0.5):7.2f} ms   p95 {percentile(values, 0.95):7.2f} ms")
    p95 = percentile(timings["hybrid"], 0.95)
    ratio50 = statistics.median(timings["hybrid"]) / statistics.median(timings["bare chroma"])
    ratio95 = p95 / percentile(timings["bare chroma"], 0.95)
    log(f"  hybrid / bare Chroma vector query: {ratio50:.2f}x at p50, {ratio95:.2f}x at p95 (same run)")
    verdict = "ok" if p95 < TARGET_P95_MS else "ABOVE TARGET"
    note = " (index partly built from precomputed embeddings)" if stored_with_precomputed else ""
    log(f"  hybrid p95 {p95:.1f} ms at {chunks} chunks{note} -- target p95 < {TARGET_P95_MS:.0f} ms at 100k: {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="index sizes in chunks, ascending")
    parser.add_argument("--queries", type=int, default=100, help="queries per size")
    parser.add_argument("--embed-upto", type=int, default=10_000, help="chunks ingested with real embedding")
    parser.add_argument("--keep", type=Path, help="build the index in this directory and keep it")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    rng = random.Random(7)
    scratch = Path(tempfile.mkdtemp(prefix="mitigate-bench-"))
    directory = args.keep or scratch / "state"
    log(f"postmortem index benchmark: sizes {sizes} chunks, {args.queries} queries per size, {os.cpu_count()} CPUs")
    log(f"  index in {directory}; corpus: perturbed copies of {SAMPLES.relative_to(ROOT)}/*.md")
    started = time.perf_counter()
    try:
        index = PostmortemIndex(directory)
        index.embedder.embed(["warm-up"])
        log(f"  after loading the model: RSS {rss_mb()[0]:.0f} MB")
        corpus = Corpus(rng)
        precomputed = False
        for size in sizes:
            have = index.lexical.count()
            log(f"\n== {size} chunks (have {have})")
            real = max(0, min(size, args.embed_upto) - have)
            if real:
                ingest_files(index, corpus, scratch / f"files-{size}", real)
            rest = size - index.lexical.count()
            if rest > 0:
                store_precomputed(index, corpus, rest)
                precomputed = True
            total = index.lexical.count()
            assert index.collection.count() == total, (index.collection.count(), total)
            log(f"  index: {index.count()} postmortems, {total} chunks; measuring queries ...")
            report_queries(total, measure_queries(index, rng, args.queries), precomputed)
            current, peak = rss_mb()
            log(f"  memory: RSS {current:.0f} MB now, {peak:.0f} MB peak")
        log(f"\ntotal bench time {time.perf_counter() - started:.0f} s")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
