"""The postmortem index, opened once per process and safely again after a failure.

The embedded Chroma store is a process-wide singleton underneath (chromadb caches one system per
path). Two worker threads opening it at once, or an open that failed half-way (a crash, a corrupted
file), left that cache holding a broken client: `'RustBindingsAPI' object has no attribute 'bindings'`
on every later open. Here the first open is serialised by a lock, a failed open clears chromadb's cache
before the one retry, and a failure is remembered as a reason (readiness shows it) instead of being
cached: the next search tries again.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any

from agent.schemas import Incident

_lock = threading.Lock()
_indexes: dict[tuple[str, str | None], Any] = {}
_failures: dict[tuple[str, str | None], str] = {}


def _key(state_dir: Path, chroma_url: str | None) -> tuple[str, str | None]:
    return str(Path(state_dir).resolve()), chroma_url


def _clear_chroma_cache() -> None:
    from chromadb.api.shared_system_client import SharedSystemClient

    SharedSystemClient.clear_system_cache()


def open_postmortem_index(state_dir: Path, chroma_url: str | None) -> Any:
    """The index under state_dir (or on a Chroma server): the same object for every caller."""
    from tools.embeddings import shared_embedder
    from tools.postmortems import PostmortemIndex

    key = _key(state_dir, chroma_url)
    with _lock:
        if key in _indexes:
            return _indexes[key]
        try:
            try:
                index = PostmortemIndex(state_dir, chroma_url=chroma_url, embedder=shared_embedder())
            except Exception:
                _clear_chroma_cache()  # a half-open client from the failed attempt must not be reused
                index = PostmortemIndex(state_dir, chroma_url=chroma_url, embedder=shared_embedder())
        except Exception as exc:
            _failures[key] = f"{type(exc).__name__}: {exc}"[:500]
            _clear_chroma_cache()
            raise
        _failures.pop(key, None)
        _indexes[key] = index
        return index


def forget_postmortem_index(state_dir: Path, chroma_url: str | None, why: str) -> None:
    """Drop an index that failed while in use; the next search opens it afresh."""
    key = _key(state_dir, chroma_url)
    with _lock:
        index = _indexes.pop(key, None)
        _failures[key] = why[:500]
        if index is not None:
            with contextlib.suppress(Exception):  # closing a broken index may fail too; dropped either way
                index.close()
        _clear_chroma_cache()


def index_problem(state_dir: Path, chroma_url: str | None) -> str | None:
    """Why the index could not be opened or used last time, or None."""
    with _lock:
        return _failures.get(_key(state_dir, chroma_url))


class LazyRetriever:
    """The graph's Retriever port: opens the index on first use (so building a run's context never fails
    on it) and drops it after a failure, so one bad moment does not poison every later run."""

    def __init__(self, state_dir: Path, chroma_url: str | None) -> None:
        self.state_dir, self.chroma_url = state_dir, chroma_url

    def search(self, incident: Incident, k: int) -> list[dict[str, Any]]:
        from tools.postmortems import PostmortemRetriever

        index = open_postmortem_index(self.state_dir, self.chroma_url)
        try:
            return PostmortemRetriever(index).search(incident, k)
        except Exception as exc:
            forget_postmortem_index(self.state_dir, self.chroma_url, f"{type(exc).__name__}: {exc}")
            raise

    def problem(self) -> str | None:
        return index_problem(self.state_dir, self.chroma_url)
