"""Adapters that give the tools read ports only: a cluster that can do nothing but read evidence, and
postmortem search by free text over the graph's retriever."""

from __future__ import annotations

from typing import Any

from agent.schemas import Incident


class ReadOnlyCluster:
    """The one method the tools may use of a cluster; its write methods are out of reach."""

    def __init__(self, cluster: Any) -> None:
        self._evidence = cluster.evidence

    def evidence(self, target: dict[str, Any]) -> dict[str, Any]:
        return dict(self._evidence(target))


class RetrieverSearch:
    """Postmortem search by text through the graph's Retriever port (the index opens on first use)."""

    def __init__(self, retriever: Any) -> None:
        self._retriever = retriever

    def search(self, text: str, limit: int = 5) -> list[dict[str, Any]]:
        question = Incident(id="question", title=text[:200], description=text[:4000])
        return list(self._retriever.search(question, limit))
