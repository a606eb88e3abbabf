"""Benchmark: postmortem ingestion throughput and query latency at 1k, 10k and 100k chunks (a synthetic
corpus of perturbed postmortems), resident memory, and hybrid query time against a bare Chroma vector
query measured in the same run. Offline (HF_HUB_OFFLINE=1 is set).

usage: .venv/bin/python bench/retrieval.py [--sizes 1000,10000,100000] [--queries 50]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORDS = [
    "gateway",
    "timeout",
    "stream",
    "dropped",
    "idle",
    "keepalive",
    "queue",
    "saturated",
    "throttled",
    "replicas",
    "node",
    "xid",
    "ecc",
    "nvlink",
    "kv",
    "cache",
    "preemption",
    "latency",
    "ttft",
    "region",
    "failover",
    "header",
    "api-version",
    "deployment",
    "template",
    "probe",
    "sidecar",
    "istio",
    "envoy",
    "redis",
    "storage",
    "mount",
    "scheduler",
    "pending",
    "crash",
    "segfault",
    "restart",
    "leak",
    "oom",
    "fetch",
    "image",
    "grammar",
]
CATEGORIES = [
    ("A3", "timeout", "M1"),
    ("A3", "resource_exhaustion", "M2"),
    ("A1", "bad_node", "M4"),
    ("A3", "latency_spike", "M3"),
    ("A2", "header_misconfig", "M1"),
    ("A3", "crash", "M5"),
]


def synthetic(i: int, rng: random.Random) -> str:
    category, subcategory, mitigation = CATEGORIES[i % len(CATEGORIES)]

    def sentence() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(12, 30))).capitalize() + "."

    sections = "\n".join(f"## {name}\n{sentence()} {sentence()}\n" for name in ("Summary", "Root cause", "Mitigation"))
    day = 1 + i % 28
    return (
        f"---\nid: SYN-{i:06d}\ntitle: Synthetic incident {i} {rng.choice(WORDS)} {rng.choice(WORDS)}\n"
        f"date: 2025-0{1 + i % 6}-{day:02d}\ncategory: {category}\nsubcategory: {subcategory}\n"
        f"mitigation: {mitigation}\n---\n{sections}"
    )


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args()
    from tools.postmortem_format import parse_postmortem
    from tools.postmortems import PostmortemIndex

    rng = random.Random(7)
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        index = PostmortemIndex(Path(tmp))
        index.embedder.embed(["warm-up"])
        chunks, postmortems, i = 0, 0, 0
        for target in sizes:
            started, added_chunks, added = time.perf_counter(), 0, 0
            while chunks < target:
                batch = []
                while chunks < target and len(batch) < 64:
                    batch.append(parse_postmortem(synthetic(i, rng), f"syn-{i}.md"))
                    chunks += len(batch[-1].chunks())
                    i += 1
                added_chunks += index._add_many(batch)
                added += len(batch)
            index.db.commit()
            elapsed = time.perf_counter() - started
            postmortems += added
            queries = [" ".join(rng.choice(WORDS) for _ in range(8)) for _ in range(args.queries)]
            timings: dict[str, list[float]] = {"hybrid": [], "vector": [], "lexical": [], "bare chroma": []}
            for query in queries:
                for mode in ("hybrid", "vector", "lexical"):
                    t = time.perf_counter()
                    index.search(query, 5, mode=mode)  # type: ignore[arg-type]
                    timings[mode].append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                index.collection.query(query_embeddings=list(index.embedder.embed([query])), n_results=5)
                timings["bare chroma"].append((time.perf_counter() - t) * 1000)
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(
                f"{chunks:>7} chunks ({postmortems} postmortems): ingest {added / elapsed:.0f} postmortems/s, "
                f"{added_chunks / elapsed:.0f} chunks/s (embedding included; target >= 100 chunks/s); "
                f"max RSS {rss:.0f} MB",
                flush=True,
            )
            for mode, values in timings.items():
                print(f"    {mode:<12} p50 {pct(values, 0.5):6.1f} ms  p95 {pct(values, 0.95):6.1f} ms", flush=True)
            ratio = statistics.median(timings["hybrid"]) / statistics.median(timings["bare chroma"])
            print(
                f"    hybrid / bare Chroma vector query (medians): {ratio:.2f}x; "
                "target p95 < 50 ms at 100k chunks incl. query embedding",
                flush=True,
            )


if __name__ == "__main__":
    main()
