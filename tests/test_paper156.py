"""The labeled dataset reproduces the paper's published counts (Ranganathan et al., Tables 2 and 3,
Figures 1-3), and its hidden fields never reach the agent."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from datetime import datetime

import pytest

from evals.dataset import load_dataset, parse_case, split_of
from tests.conftest import ROOT

DATASET = ROOT / "evals" / "datasets" / "paper156.jsonl"

# Table 2 (n = 156), with the within-category percentages turned into counts.
TABLE2 = {
    ("A1", "deployment_template_misconfig"): 8,
    ("A1", "bad_node"): 6,
    ("A1", "mpi_ring"): 6,
    ("A1", "sidecar"): 4,
    ("A1", "istio"): 2,
    ("A1", "delayed_compute_allocation"): 2,
    ("A1", "redis"): 1,
    ("A1", "storage"): 1,
    ("A1", "node_scheduling"): 1,
    ("A2", "header_misconfig"): 20,
    ("A2", "invalid_output"): 5,
    ("A3", "timeout"): 37,
    ("A3", "resource_exhaustion"): 27,
    ("A3", "crash"): 11,
    ("A3", "latency_spike"): 6,
    ("A3", "input_fetch"): 6,
    ("A3", "kv_cache"): 5,
    ("A3", "constraint_sampling"): 1,
    ("A3", "memory_leak"): 1,
    ("A4", "rollout"): 2,
    ("A4", "low_traffic_detection"): 1,
    ("A4", "misconfigured_alert"): 1,
    ("A4", "error_code_translation"): 1,
    ("A4", "imbalanced_routing"): 1,
}
TABLE3 = {"M1": 44, "M2": 15, "M3": 7, "M4": 14, "M5": 75, "M6": 1}


@pytest.fixture(scope="module")
def lines() -> list[dict]:
    return [json.loads(line) for line in DATASET.read_text().splitlines() if line.strip()]


def test_table2_subcategory_counts(lines):
    counts = Counter((d["labels"]["category"], d["labels"]["subcategory"]) for d in lines)
    assert dict(counts) == TABLE2
    assert Counter(d["labels"]["category"] for d in lines) == {"A1": 31, "A2": 25, "A3": 94, "A4": 6}


def test_table3_action_counts_and_figure3_shape(lines):
    assert dict(Counter(d["labels"]["mitigation"] for d in lines)) == TABLE3
    cross = Counter((d["labels"]["category"], d["labels"]["mitigation"]) for d in lines)
    assert {c for (c, m) in cross if m == "M6"} == {"A2"}
    for action in ("M2", "M3", "M4"):
        in_a3 = cross[("A3", action)]
        assert in_a3 > sum(n for (c, m), n in cross.items() if m == action and c != "A3")
    for action in ("M1", "M5"):
        assert {c for (c, m) in cross if m == action} == {"A1", "A2", "A3", "A4"}


def test_auto_detected_share_is_the_papers(lines):
    assert sum(bool(d["timeline"]["auto_detected"]) for d in lines) == 115


def _hours(d: dict, end: str) -> float:
    t = d["timeline"]
    start = datetime.fromisoformat(t["started_at"].replace("Z", "+00:00"))
    return (datetime.fromisoformat(t[end].replace("Z", "+00:00")) - start).total_seconds() / 3600


def test_timelines_are_ordered_and_monthly_ttm_p75_is_close_to_the_paper(lines):
    for d in lines:
        t = d["timeline"]
        assert t["started_at"] <= t["detected_at"] <= t["engaged_at"] <= t["mitigated_at"], d["id"]
    by_month: dict[int, list[float]] = {}
    for d in lines:
        month = datetime.fromisoformat(d["timeline"]["started_at"].replace("Z", "+00:00")).month
        by_month.setdefault(month, []).append(_hours(d, "mitigated_at"))
    assert set(by_month) == {4, 5, 6}
    p75 = {m: statistics.quantiles(v, n=4, method="inclusive")[2] for m, v in by_month.items()}
    assert p75[4] == pytest.approx(32, rel=0.15)
    assert p75[5] == pytest.approx(49, rel=0.15)


def test_halves_are_even_and_ids_unique(lines):
    ids = [d["id"] for d in lines]
    assert len(set(ids)) == len(ids) == 156
    assert Counter(split_of(i) for i in ids) == {"dev": 78, "test": 78}
    assert len(load_dataset(DATASET, "test")) == 78


def test_hidden_fields_never_reach_the_agent(lines):
    for d in lines:
        incident = parse_case(d).incident.model_dump(mode="json")
        assert set(incident) <= {"id", "title", "description", "alert", "signals", "started_at"}
        assert d.get("resolution", "\0") not in json.dumps(incident)


def test_texts_are_distinct(lines):
    descriptions = [d["description"] for d in lines]
    assert len(set(descriptions)) == len(descriptions)
    openings = Counter(" ".join(d["description"].split()[:4]).lower() for d in lines)
    assert openings.most_common(1)[0][1] <= 4  # not mass-produced from a few templates
