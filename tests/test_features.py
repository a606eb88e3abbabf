"""What the learned judgement reads: canonical signals, other languages, the feature layout and the
voice prior for notes that name no cause."""

from __future__ import annotations

import numpy as np
import pytest

from agent.canonical import CanonicalSignalsError, canonicalise, parse_signal_map
from agent.features import dense_features, layout_for
from agent.judgement import with_voice_prior
from agent.no_action import assess
from agent.schemas import Incident


def test_exporter_names_are_converted_with_their_units():
    out = canonicalise(
        {
            "DCGM_FI_DEV_GPU_UTIL": 87,  # percent
            "p99_latency_ms": 4200,  # milliseconds
            "success_rate": 97.5,  # percent written as a number over 1
            "gateway_5xx_ratio": 0.02,  # already a fraction
            "vllm:num_requests_waiting": 31,
            "queue_depth_peak_in_window": 5,  # matches nothing
        }
    )
    assert out.signals == {
        "gpu_util": pytest.approx(0.87),
        "e2e_p95_s": pytest.approx(4.2),
        "sla": pytest.approx(0.975),
        "http_5xx_rate": pytest.approx(0.02),
        "queue_depth": 31,
    }
    assert out.unmapped == ["queue_depth_peak_in_window"]


def test_the_incidents_own_reading_wins_and_peaks_keep_their_suffix():
    out = canonicalise({"sla": 0.91, "success_rate": 99.9, "p95_ms_peak": 9000, "p95_ms": 800})
    assert out.signals["sla"] == 0.91 and "success_rate" not in out.converted
    assert out.signals["e2e_p95_s_peak"] == pytest.approx(9.0) and out.signals["e2e_p95_s"] == pytest.approx(0.8)


def test_a_non_production_reading_never_stands_for_production():
    out = canonicalise({"staging_error_rate": 0.4, "canary_success_rate": 0.2})
    assert out.signals == {} and out.unmapped == ["canary_success_rate", "staging_error_rate"]


def test_a_mapping_file_with_an_unknown_canonical_name_is_refused():
    with pytest.raises(CanonicalSignalsError, match="canonical"):
        parse_signal_map("exact:\n  foo_total: {canonical: not_a_signal}\n")


@pytest.mark.parametrize(
    ("text", "reading"),
    [
        ("Zeitüberschreitung bei langen Streams, Knoten gpu-3 abgestürzt", "timeout"),
        ("推理服务显存不足，节点重启了", "node"),
        ("ストリーミングが30秒でタイムアウトする", "timeout"),
        ("El nodo se reinició y la cola sigue creciendo", "queue"),
    ],
)
def test_trade_words_in_other_languages_are_read_in_english(text, reading):
    assert reading in Incident(id="L", title=text).text().split("[in English:")[1]


def test_english_text_is_read_as_it_is():
    text = "Pods are storing weights on a slow disk"
    assert Incident(id="E", title=text).text() == text


def test_every_feature_has_a_name(rulebook):
    incident = Incident(id="F", title="429s on llama, queue 300", signals={"queue_depth": 300, "http_429_rate": 0.1})
    vector = dense_features(rulebook, incident, assess(rulebook.no_action, incident))
    assert len(vector) == len(layout_for(rulebook).names) and np.isfinite(vector).all()


def test_a_status_note_naming_no_cause_leans_on_its_voices_prior(rulebook):
    names = layout_for(rulebook).names
    uncertain = {"A1": 0.2, "A2": 0.05, "A3": 0.25, "A4": 0.5}
    thin = Incident(id="S1", title="Elevated error rates", description="Investigating - We are looking into it.")
    vector = dense_features(rulebook, thin, assess(rulebook.no_action, thin))
    assert vector[names.index("status_page_naming_no_cause")] == 1.0
    weighed = with_voice_prior(rulebook, vector, uncertain)
    assert max(weighed, key=lambda c: weighed[c]) == "A1" and sum(weighed.values()) == pytest.approx(1.0)
    named = Incident(
        id="S2", title="Elevated error rates", description="Identified - Xid 79 on GPU nodes; nodes drained."
    )
    vector = dense_features(rulebook, named, assess(rulebook.no_action, named))
    assert with_voice_prior(rulebook, vector, uncertain) == uncertain  # a named cause is left alone
