"""Benchmark: `mitigate model train` on every labelled source (target: under 2 minutes on 2 cores),
wall and CPU time, against the time of embedding the same texts alone (the part training cannot skip),
measured in the same run; and the artefact's size.

usage: .venv/bin/python bench/train.py
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    from agent.features import embedding_text, with_canonical_signals
    from learn.sources import DEFAULT_SOURCES, existing, load_sources
    from tools.embeddings import MiniLMEmbedder

    cases = load_sources(existing(DEFAULT_SOURCES))
    texts = [embedding_text(with_canonical_signals(c.incident)) for c in cases]
    embedder = MiniLMEmbedder()
    embedder.embed(texts[:8])  # load the model first: training pays for that too, but not per text
    started = time.perf_counter()
    embedder.embed(texts)
    embed_s = time.perf_counter() - started

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "judgement.json"
        cpu_before = _cpu_children()
        started = time.perf_counter()
        subprocess.run(
            [str(ROOT / ".venv/bin/mitigate"), "model", "train", "--out", str(out)],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        wall = time.perf_counter() - started
        cpu = _cpu_children() - cpu_before
        size = out.stat().st_size + out.with_suffix(".npz").stat().st_size
    print(f"mitigate model train: {len(cases)} cases, {wall:.1f} s wall, {cpu:.1f} s CPU (target < 120 s on 2 cores)")
    ratio = wall / embed_s
    print(f"  embedding the same {len(texts)} texts alone: {embed_s:.1f} s (the whole train takes {ratio:.1f}x that)")
    print(f"  artefact: {size / 1024:.0f} KiB (json + npz)")


if __name__ == "__main__":
    main()
