from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agent.rulebook import DEFAULT_RULEBOOK, RulebookError, parse_rulebook
from agent.schemas import Incident

# The label vocabulary of the domain doc (paper 000, Table 1), written out independently of the rulebook.
TAXONOMY = {
    "A1": {
        "compute_capacity",
        "delayed_compute_allocation",
        "deployment_template_misconfig",
        "bad_node",
        "redis",
        "mpi_ring",
        "sidecar",
        "istio",
        "node_scheduling",
        "storage",
    },
    # config_change goes beyond Table 1: a configuration rollout found by investigating the live cluster
    # (issue 15). Only investigation's readings reach it, so no labelled dataset case can be affected.
    "A2": {"invalid_weights", "header_misconfig", "invalid_output", "config_change"},
    "A3": {
        "resource_exhaustion",
        "timeout",
        "latency_spike",
        "kv_cache",
        "crash",
        "input_fetch",
        "constraint_sampling",
        "memory_leak",
    },
    "A4": {
        "low_traffic_detection",
        "misconfigured_alert",
        "missing_telemetry",
        "error_code_translation",
        "imbalanced_routing",
        "rollout",
    },
}


def test_rulebook_covers_exactly_the_taxonomy(rulebook):
    found: dict[str, set[str]] = {}
    for sub in rulebook.subcategories.values():
        found.setdefault(sub.category, set()).add(sub.id)
    assert found == TAXONOMY


def test_every_subcategory_has_evidence_and_a_plan(rulebook):
    for sub in rulebook.subcategories.values():
        assert sub.phrases or sub.alerts or sub.signals, sub.id
        assert sub.plan.default in {"M1", "M2", "M3", "M4", "M5", "M6"}, sub.id


def test_timeout_from_signal_and_text(rulebook):
    result = rulebook.classify(
        Incident(
            id="t",
            title="Streams cut off",
            description="long generations dropped after 60 s",
            signals={"http_408_rate": 0.02},
        )
    )
    assert (result.category, result.subcategory) == ("A3", "timeout")
    assert any(e.source == "signal" and "http_408_rate" in e.detail for e in result.evidence)
    assert 0.0 <= result.confidence <= 1.0


def test_signal_alone_counts_through_its_peak(rulebook):
    quiet = Incident(id="q", title="endpoint check", signals={"http_408_rate": 0.0001})
    peaked = Incident(id="p", title="endpoint check", signals={"http_408_rate": 0.0001, "http_408_rate_peak": 0.03})
    assert rulebook.classify(quiet).subcategory == "unknown"
    assert rulebook.classify(peaked).subcategory == "timeout"


def test_earliest_cause_wins_over_the_engine_symptom(rulebook):
    overloaded = Incident(
        id="e",
        title="429s and queue backlog on llama",
        description="requests waiting piling up, throttling, server busy",
    )
    on_bad_node = Incident(
        id="n",
        title="429s and queue backlog on llama",
        description="requests waiting piling up, throttling, server busy; all on the same node "
        "which reports XID 79 errors",
    )
    assert rulebook.classify(overloaded).subcategory == "resource_exhaustion"
    assert (rulebook.classify(on_bad_node).category, rulebook.classify(on_bad_node).subcategory) == ("A1", "bad_node")


def test_healthy_nodes_argue_against_a_bad_node(rulebook):
    text = "throttling and 429s, queue backlog growing. bad node suspected at first but nodes look healthy"
    assert rulebook.classify(Incident(id="h", title=text)).subcategory == "resource_exhaustion"


def test_thin_evidence_is_unknown_with_low_confidence(rulebook):
    result = rulebook.classify(
        Incident(id="u", title="Something is off with the service", description="A customer says it feels weird today.")
    )
    assert result.category == "unknown" and result.subcategory == "unknown"
    assert result.confidence < rulebook.threshold


def test_rulebook_is_data_removing_rules_changes_the_answer(tmp_path: Path):
    data = yaml.safe_load(DEFAULT_RULEBOOK.read_text())
    incident = Incident(id="s", title="redis cluster failover dropped sessions")
    assert parse_rulebook(DEFAULT_RULEBOOK.read_text()).classify(incident).subcategory == "redis"
    data["subcategories"]["redis"]["phrases"] = []
    data["subcategories"]["redis"]["alerts"] = []
    edited = parse_rulebook(yaml.safe_dump(data))
    assert edited.classify(incident).subcategory != "redis"
    assert edited.digest != parse_rulebook(DEFAULT_RULEBOOK.read_text()).digest


def test_bad_rulebook_names_the_place():
    data = yaml.safe_load(DEFAULT_RULEBOOK.read_text())
    data["subcategories"]["timeout"]["phrases"] = [{"p": "(unclosed", "w": 1}]
    with pytest.raises(RulebookError, match=r"subcategories\.timeout"):
        parse_rulebook(yaml.safe_dump(data))
    data = yaml.safe_load(DEFAULT_RULEBOOK.read_text())
    data["subcategories"]["timeout"]["category"] = "A9"
    with pytest.raises(RulebookError, match="unknown category"):
        parse_rulebook(yaml.safe_dump(data))
