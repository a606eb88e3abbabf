"""`mitigate model train`: fit the judgement on every labelled source and write the artefact with
what it was trained on and how it did on sources it did not see."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from agent.judgement import Judgement, expected_identity, save_judgement
from agent.rulebook import Rulebook
from agent.schemas import CATEGORIES
from evals.metrics import clopper_pearson
from learn import train
from learn.sources import data_card, data_hashes, load_sources

Progress = Callable[[str], None]


class CachedEmbedder:
    """Embeds each distinct text once per process: cross-validation reads every case many times."""

    def __init__(self, embedder: Any) -> None:
        self._embedder = embedder
        self._cache: dict[str, np.ndarray] = {}

    def embed(self, texts: list[str]) -> np.ndarray:
        todo = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if todo:
            for text, vector in zip(todo, self._embedder.embed(todo), strict=True):
                self._cache[text] = vector
        return np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, 384), dtype=np.float32)

    def embed_one(self, text: str) -> np.ndarray:
        return np.asarray(self.embed([text])[0])


def ece(confidence: np.ndarray, right: np.ndarray, buckets: int = 10) -> float:
    """Expected calibration error over equal-width confidence buckets."""
    if len(confidence) == 0:
        return float("nan")
    index = np.minimum((confidence * buckets).astype(int), buckets - 1)
    total = 0.0
    for b in range(buckets):
        members = index == b
        if members.any():
            total += members.sum() * abs(right[members].mean() - confidence[members].mean())
    return float(total / len(confidence))


def out_of_source_summary(data: train.Featurised, oos: train.OutOfSource, judgement: Judgement) -> dict[str, Any]:
    """Per source and pooled, on the predictions made while that source was held out (the temperature
    and thresholds were fitted on these same predictions: `mitigate eval cv` gives the nested figures)."""
    rows = oos.rows
    predicted = np.array(CATEGORIES)[oos.category.argmax(axis=1)]
    confidence = oos.category.max(axis=1)
    decided = data.allows_m5[rows] & (oos.no_action >= judgement.no_action_threshold)
    out: dict[str, Any] = {}
    groups = {"pooled": np.ones(len(rows), dtype=bool)} | {
        str(s): data.sources[rows] == s for s in sorted(set(data.sources[rows]))
    }
    for name, member in groups.items():
        labelled = member & (data.category[rows] != "")
        right = predicted[labelled] == data.category[rows][labelled]
        acted = member & (data.mitigation[rows] != "")
        is_m5 = data.mitigation[rows] == "M5"
        k, n = int((decided & acted & is_m5).sum()), int((decided & acted).sum())
        out[name] = {
            "n": int(member.sum()),
            "category_accuracy": round(float(right.mean()), 4) if len(right) else None,
            "ece": round(ece(confidence[labelled], right), 4) if len(right) else None,
            "m5_precision": round(k / n, 4) if n else None,
            "m5_precision_low": round(clopper_pearson(k, n)[0], 4) if n else None,
            "m5_recall": round(k / int((acted & is_m5).sum()), 4) if (acted & is_m5).any() else None,
            "m5_predicted": n,
        }
    return out


def train_model(
    paths: list[Path], rulebook: Rulebook, embedder: Any, out: Path, progress: Progress = lambda _: None
) -> tuple[Judgement, dict[str, Any]]:
    started = time.perf_counter()
    cases = load_sources(paths)
    progress(f"{len(cases)} labelled cases from {len({c.source for c in cases})} sources; embedding")
    data = train.featurise(cases, rulebook, CachedEmbedder(embedder).embed)
    progress("fitting (leave one source out for calibration and thresholds, then on everything)")
    hashes = data_hashes(paths)
    # The version names what the model was made from: the data, the rulebook and the feature layout.
    made_from = {"data": hashes, **expected_identity(rulebook)}
    digest = hashlib.sha256(json.dumps(made_from, sort_keys=True).encode()).hexdigest()[:8]
    metadata: dict[str, Any] = {
        **expected_identity(rulebook),
        "version": f"{rulebook.version}+{digest}",
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "data": hashes,
        "n_cases": len(cases),
        "sources": data_card(cases),
        "features": {
            "dense": int(data.dense.shape[1]),
            "embedding_components": train.EMBEDDING_COMPONENTS,
            "neighbour_votes": len(CATEGORIES) + 1,
        },
        "hyperparameters": {
            "C_category": train.C_CATEGORY,
            "C_subcategory": train.C_SUBCATEGORY,
            "C_no_action": train.C_NO_ACTION,
            "m5_precision": train.M5_PRECISION,
            "m5_precision_low": train.M5_PRECISION_LOW,
            "covered_accuracy": train.COVERED_ACCURACY,
        },
    }
    judgement, oos = train.fit_judgement(data, np.arange(len(cases)), metadata)
    judgement.metadata["cv"] = out_of_source_summary(data, oos, judgement)
    judgement.metadata["seconds"] = round(time.perf_counter() - started, 1)
    save_judgement(judgement, out)
    return judgement, judgement.metadata
