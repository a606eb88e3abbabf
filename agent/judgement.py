"""The learned, calibrated judgement: category, subcategory and "no action" probabilities from the
rulebook's evidence, the signals and the text's embedding, plus the votes of the nearest labelled
incidents.

Inference is numpy only (the artefact holds linear heads and a neighbour bank; scikit-learn is needed
to train, not to triage). The artefact is two files: `<name>.npz` with the arrays (loaded without
pickle) and `<name>.json` with what it was trained on and how well it did, including the sha256 of
the arrays. A missing, corrupt or stale artefact raises `ModelArtefactError` naming the command that
rebuilds it; the service then triages with the rulebook alone and says so in every report.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from agent.features import FEATURE_VERSION, dense_features, layout_for
from agent.no_action import NoActionAssessment
from agent.rulebook import Rulebook, Scores
from agent.schemas import CATEGORIES, Incident

DEFAULT_ARTEFACT = Path(__file__).with_name("model") / "judgement.json"
REBUILD = "mitigate model train"
NEIGHBOURS = 7
NEIGHBOUR_FEATURES = [*(f"neighbours:{c}" for c in CATEGORIES), "neighbours:M5"]


class ModelArtefactError(RuntimeError):
    """The model artefact cannot be used; the message names the file, the reason and the fix."""


@dataclass(frozen=True)
class LinearHead:
    """A standardised linear model with a softmax (or, for two classes, a sigmoid) and a temperature
    fitted on out-of-fold predictions, so its probabilities mean what they say."""

    classes: tuple[str, ...]
    columns: np.ndarray  # which features of the full vector this head reads
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray  # (classes, features), or (1, features) for a binary head
    intercept: np.ndarray
    temperature: float = 1.0

    def logits(self, vectors: np.ndarray) -> np.ndarray:
        """One column per class; a binary head's single score stands for its second class (as in
        scikit-learn), so the first class gets 0 and a softmax over the two is the sigmoid."""
        z = (vectors[:, self.columns] - self.mean) / self.scale
        raw = np.asarray(z @ self.coef.T + self.intercept)
        if len(self.classes) == 2 and raw.shape[1] == 1:
            return np.concatenate([np.zeros_like(raw), raw], axis=1)
        return raw

    def proba(self, vectors: np.ndarray) -> np.ndarray:
        logits = self.logits(vectors) / self.temperature
        logits = logits - logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        return np.asarray(weights / weights.sum(axis=1, keepdims=True))


@dataclass(frozen=True)
class NeighbourBank:
    """The labelled incidents the model was trained on, as unit embeddings: their labels are the
    precedent votes. An incident only hears neighbours that happened before it, when both times are known."""

    embeddings: np.ndarray  # (n, 384) float32, unit norm
    categories: np.ndarray  # (n,) index into CATEGORIES
    no_action: np.ndarray  # (n,) 1.0 where the label was M5
    times: np.ndarray  # (n,) POSIX seconds, nan when unknown
    ids: tuple[str, ...] = ()

    def votes(self, embedding: np.ndarray, before: float | None, exclude: np.ndarray | None = None) -> np.ndarray:
        similarity = self.embeddings @ embedding.astype(np.float32)
        usable = np.ones(len(similarity), dtype=bool) if exclude is None else ~exclude
        if before is not None:
            usable &= ~(self.times > before)  # nan compares False: unknown times stay usable
        similarity = np.where(usable, similarity, -np.inf)
        k = min(NEIGHBOURS, int(usable.sum()))
        out = np.zeros(len(CATEGORIES) + 1)
        if k == 0:
            return out
        nearest = np.argpartition(-similarity, k - 1)[:k]
        weights = np.clip(similarity[nearest], 0.0, None)
        if weights.sum() <= 0:
            return out
        for j, w in zip(nearest, weights, strict=True):
            out[int(self.categories[j])] += w
            out[-1] += w * self.no_action[j]
        return np.asarray(out / weights.sum())


@dataclass(frozen=True)
class JudgementResult:
    category_probabilities: dict[str, float]
    subcategory_probabilities: dict[str, float]
    category: str
    subcategory: str
    confidence: float  # calibrated probability of the category
    subcategory_confidence: float
    needs_human: bool
    needs_human_reason: str
    no_action_probability: float
    neighbours: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Projection:
    """The embedding's principal directions over the training incidents: a few dozen numbers say what
    384 do for a linear model trained on a few hundred cases, with less room to learn a writer's style."""

    mean: np.ndarray  # (384,)
    components: np.ndarray  # (384, k)

    def apply(self, embedding: np.ndarray) -> np.ndarray:
        return np.asarray((embedding - self.mean) @ self.components)


@dataclass(frozen=True)
class Judgement:
    metadata: dict[str, Any]
    category: LinearHead
    subcategory: LinearHead
    no_action: LinearHead
    bank: NeighbourBank
    projection: Projection
    no_action_threshold: float  # the calibrated M5 probability at or above which "no action" is decided
    needs_human_below: float  # category probability under which a human must decide

    @property
    def version(self) -> str:
        return str(self.metadata.get("version", "untrained"))

    def vector(
        self,
        rulebook: Rulebook,
        incident: Incident,
        assessment: NoActionAssessment,
        embedding: np.ndarray,
        scores: Scores | None = None,
    ) -> np.ndarray:
        before = incident.started_at.timestamp() if isinstance(incident.started_at, datetime) else None
        votes = self.bank.votes(embedding, before)
        dense = dense_features(rulebook, incident, assessment, scores)
        return np.concatenate([dense, self.projection.apply(embedding), votes])

    def judge(
        self,
        rulebook: Rulebook,
        incident: Incident,
        assessment: NoActionAssessment,
        embedding: np.ndarray,
        scores: Scores | None = None,
    ) -> JudgementResult:
        """`scores`: the incident's rulebook scores, when the caller has them already."""
        vector = self.vector(rulebook, incident, assessment, embedding, scores)[None, :]
        return self.judge_vector(rulebook, vector)

    def judge_vector(self, rulebook: Rulebook, vector: np.ndarray) -> JudgementResult:
        categories = dict(zip(self.category.classes, self.category.proba(vector)[0].tolist(), strict=True))
        categories = with_voice_prior(rulebook, vector[0], categories)
        subs = dict(zip(self.subcategory.classes, self.subcategory.proba(vector)[0].tolist(), strict=True))
        best = max(categories, key=lambda c: categories[c])
        within = {s: p for s, p in subs.items() if rulebook.subcategories[s].category == best}
        sub = (
            max(within, key=lambda s: within[s])
            if within
            else next(s.id for s in rulebook.subcategories.values() if s.category == best)
        )
        share = within.get(sub, 0.0) / max(1e-12, sum(within.values()))
        confidence = categories[best]
        needs_human = confidence < self.needs_human_below
        reason = (
            f"best guess {best}/{sub} at {confidence:.2f}, under the {self.needs_human_below:.2f} at which "
            "the model's answers were right often enough to act on"
            if needs_human
            else ""
        )
        no_action = float(self.no_action.proba(vector)[0, 1])
        n = len(CATEGORIES)
        neighbours = {name: float(v) for name, v in zip(NEIGHBOUR_FEATURES, vector[0, -(n + 1) :], strict=True)}
        return JudgementResult(
            category_probabilities={c: round(p, 4) for c, p in categories.items()},
            subcategory_probabilities={s: round(p, 4) for s, p in sorted(subs.items(), key=lambda kv: -kv[1])[:5]},
            category=best,
            subcategory=sub,
            confidence=round(confidence, 4),
            subcategory_confidence=round(confidence * share, 4),
            needs_human=needs_human,
            needs_human_reason=reason,
            no_action_probability=round(no_action, 4),
            neighbours=neighbours,
        )


def with_voice_prior(rulebook: Rulebook, vector: np.ndarray, categories: dict[str, float]) -> dict[str, float]:
    """A note that names no cause in a voice whose writers mostly report one kind of failure (public
    status pages: infrastructure) is weighed by that voice's prior (`voice_priors` in the rulebook):
    the model's probabilities times the prior, renormalised. Anything that names a cause is untouched."""
    names = layout_for(rulebook).names
    for voice, prior in rulebook.voice_priors.items():
        flag = f"{voice}_naming_no_cause"
        if flag in names and vector[names.index(flag)] > 0:
            weighted = {c: p * prior.get(c, 0.0) for c, p in categories.items()}
            total = sum(weighted.values())
            if total > 0:
                return {c: p / total for c, p in weighted.items()}
    return categories


# ---------------------------------------------------------------------------- the artefact on disk

_HEADS = ("category", "subcategory", "no_action")
_HEAD_ARRAYS = ("columns", "mean", "scale", "coef", "intercept")
_BANK_ARRAYS = ("embeddings", "categories", "no_action", "times")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_judgement(judgement: Judgement, path: Path) -> None:
    """Write `<path stem>.npz` and then `path` (JSON metadata naming the arrays' sha256)."""
    arrays: dict[str, np.ndarray] = {}
    heads: dict[str, Any] = {}
    for name in _HEADS:
        head: LinearHead = getattr(judgement, name)
        for key in _HEAD_ARRAYS:
            arrays[f"{name}.{key}"] = np.asarray(getattr(head, key))
        heads[name] = {"classes": list(head.classes), "temperature": head.temperature}
    for key in _BANK_ARRAYS:
        arrays[f"bank.{key}"] = np.asarray(getattr(judgement.bank, key))
    arrays["projection.mean"] = judgement.projection.mean
    arrays["projection.components"] = judgement.projection.components
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays_path = path.with_suffix(".npz")
    with arrays_path.open("wb") as handle:
        np.savez_compressed(handle, **arrays)  # type: ignore[arg-type]
    metadata = {
        **judgement.metadata,
        "heads": heads,
        "bank_ids": list(judgement.bank.ids),
        "no_action_threshold": judgement.no_action_threshold,
        "needs_human_below": judgement.needs_human_below,
        "arrays": {"file": arrays_path.name, "sha256": _sha256(arrays_path)},
    }
    path.write_text(json.dumps(metadata, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def _problem(path: Path, why: str) -> ModelArtefactError:
    return ModelArtefactError(f"model artefact {path}: {why}; rebuild it with `{REBUILD}`")


def expected_identity(rulebook: Rulebook) -> dict[str, str]:
    """What an artefact must have been trained against to be used with this rulebook and code."""
    from tools.embeddings import MODEL_SHA256

    return {
        "rulebook_version": rulebook.version,
        "rulebook_digest": rulebook.digest,
        "feature_version": FEATURE_VERSION,
        "embedding_model_sha256": MODEL_SHA256,
    }


def load_judgement(path: Path, rulebook: Rulebook) -> Judgement:
    if not path.is_file():
        raise _problem(path, "is missing")
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(metadata, dict):
            raise ValueError("metadata is not a JSON object")
    except (OSError, ValueError) as exc:
        raise _problem(path, f"metadata unreadable ({exc})") from exc
    for key, wanted in expected_identity(rulebook).items():
        if metadata.get(key) != wanted:
            raise _problem(path, f"is stale: trained with {key} {metadata.get(key)!r}, this code has {wanted!r}")
    arrays_path = path.with_name(str(metadata.get("arrays", {}).get("file", path.with_suffix(".npz").name)))
    if not arrays_path.is_file():
        raise _problem(arrays_path, "is missing")
    if _sha256(arrays_path) != metadata.get("arrays", {}).get("sha256"):
        raise _problem(arrays_path, "is corrupt (its sha256 does not match the metadata)")
    try:
        with np.load(arrays_path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        heads = {
            name: LinearHead(
                classes=tuple(metadata["heads"][name]["classes"]),
                temperature=float(metadata["heads"][name]["temperature"]),
                **{key: arrays[f"{name}.{key}"] for key in _HEAD_ARRAYS},
            )
            for name in _HEADS
        }
        bank = NeighbourBank(
            **{key: arrays[f"bank.{key}"] for key in _BANK_ARRAYS}, ids=tuple(metadata.get("bank_ids", []))
        )
        unknown = set(heads["subcategory"].classes) - set(rulebook.subcategories)
        if unknown:
            raise ValueError(f"subcategories not in the rulebook: {sorted(unknown)}")
        return Judgement(
            metadata={k: v for k, v in metadata.items() if k not in ("heads", "bank_ids", "arrays")},
            category=heads["category"],
            subcategory=heads["subcategory"],
            no_action=heads["no_action"],
            bank=bank,
            projection=Projection(arrays["projection.mean"], arrays["projection.components"]),
            no_action_threshold=float(metadata["no_action_threshold"]),
            needs_human_below=float(metadata["needs_human_below"]),
        )
    except (KeyError, ValueError, TypeError, OSError) as exc:
        raise _problem(path, f"unusable ({type(exc).__name__}: {exc})") from exc
