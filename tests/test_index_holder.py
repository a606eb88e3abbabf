"""The embedded postmortem index is opened once per process, even when worker threads ask for it at the
same moment (two threads opening it at once broke the store for good), and opened again after a failure."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from api.index_holder import LazyRetriever, forget_postmortem_index, index_problem, open_postmortem_index
from tests.conftest import ROOT


def test_threads_opening_the_index_at_once_get_one_index(tmp_path: Path):
    open_postmortem_index(tmp_path, None).ingest(ROOT / "data" / "postmortems" / "p156-001.md")
    forget_postmortem_index(tmp_path, None, "start from a closed index")  # as a freshly started process
    barrier, opened, errors = threading.Barrier(8), [], []

    def worker() -> None:
        barrier.wait()
        try:
            opened.append(open_postmortem_index(tmp_path, None))
        except Exception as exc:  # collected: the assertion below names it
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == [] and len(opened) == 8 and len({id(index) for index in opened}) == 1
    assert opened[0].count() == 1 and index_problem(tmp_path, None) is None


def test_a_store_that_cannot_open_is_a_reason_and_opens_once_repaired(tmp_path: Path):
    from agent.schemas import Incident

    open_postmortem_index(tmp_path, None).ingest(ROOT / "data" / "postmortems" / "p156-001.md")
    forget_postmortem_index(tmp_path, None, "closed")
    chroma = tmp_path / "chroma" / "chroma.sqlite3"
    good = chroma.read_bytes()
    chroma.write_bytes(b"garbage" * 1000)
    retriever = LazyRetriever(tmp_path, None)
    with pytest.raises(RuntimeError, match="cannot open the postmortem collection"):
        retriever.search(Incident(id="X", title="429 throttling"), 3)
    assert "cannot open the postmortem collection" in (retriever.problem() or "")
    chroma.write_bytes(good)  # repaired (restored from a backup, say): the next search opens it
    assert retriever.search(Incident(id="X", title="429 throttling"), 3)
    assert retriever.problem() is None
