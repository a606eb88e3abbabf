"""Fit the judgement: linear heads over the incident's features, calibrated and thresholded on
out-of-source predictions, and the neighbour bank of labelled incidents.

Everything a threshold or a temperature is fitted on is an out-of-fold prediction for a source the
model did not learn from (leave one source out), because that is the situation the model meets in
production: incidents written by people it has never read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.features import dense_features, embedding_text, with_canonical_signals
from agent.judgement import Judgement, LinearHead, NeighbourBank, Projection
from agent.no_action import assess
from agent.rulebook import Rulebook
from agent.schemas import CATEGORIES
from evals.metrics import clopper_pearson
from learn.sources import LabelledCase

# Inverse regularisation strength per head, chosen by leave-one-source-out cross-validation
# (docs/evals.md); the heads see a few hundred cases, so they are kept strongly regularised.
C_CATEGORY = 0.1
C_SUBCATEGORY = 0.3
C_NO_ACTION = 0.1
M5_PRECISION = 0.95  # the "no action" operating point: this precision on out-of-source predictions...
M5_PRECISION_LOW = 0.85  # ...with at least this exact (Clopper-Pearson) 95 % lower bound
COVERED_ACCURACY = (
    0.90  # as reliable as a second human annotator (the paper: ~90 % agreement); under it, a human decides
)
EMBEDDING_COMPONENTS = 64  # principal directions of the embedding the heads read (as good as all 384, and faster)


@dataclass
class Featurised:
    """The cases as arrays: dense features (without neighbour votes), embeddings and labels."""

    ids: list[str]
    sources: np.ndarray
    dense: np.ndarray
    embeddings: np.ndarray
    times: np.ndarray
    category: np.ndarray  # str, "" when unlabelled
    subcategory: np.ndarray
    mitigation: np.ndarray
    allows_m5: np.ndarray  # the no-action evidence and vetoes permit M5


def featurise(
    cases: Sequence[LabelledCase], rulebook: Rulebook, embed: Callable[[list[str]], np.ndarray]
) -> Featurised:
    incidents = [with_canonical_signals(c.incident) for c in cases]
    embeddings = np.asarray(embed([embedding_text(i) for i in incidents]), dtype=np.float32)
    assessments = [assess(rulebook.no_action, i) for i in incidents]
    dense = np.stack([dense_features(rulebook, i, a) for i, a in zip(incidents, assessments, strict=True)])
    return Featurised(
        ids=[c.id for c in cases],
        sources=np.array([c.source for c in cases]),
        dense=dense,
        embeddings=embeddings,
        times=np.array([c.time if c.time is not None else np.nan for c in cases], dtype=np.float64),
        category=np.array([c.category or "" for c in cases]),
        subcategory=np.array([c.subcategory or "" for c in cases]),
        mitigation=np.array([c.mitigation or "" for c in cases]),
        allows_m5=np.array([a.allows for a in assessments]),
    )


def bank_of(data: Featurised, rows: np.ndarray) -> NeighbourBank:
    labelled = rows[data.category[rows] != ""]
    return NeighbourBank(
        embeddings=data.embeddings[labelled],
        categories=np.array([CATEGORIES.index(c) for c in data.category[labelled]]),
        no_action=(data.mitigation[labelled] == "M5").astype(np.float64),
        times=data.times[labelled],
        ids=tuple(data.ids[i] for i in labelled),
    )


def projection_of(data: Featurised, rows: np.ndarray) -> Projection:
    mean = data.embeddings[rows].mean(axis=0)
    _, _, directions = np.linalg.svd(data.embeddings[rows] - mean, full_matrices=False)
    return Projection(mean=mean, components=np.ascontiguousarray(directions[:EMBEDDING_COMPONENTS].T))


def vectors(
    data: Featurised, rows: np.ndarray, bank_rows: np.ndarray, same_source_hidden: bool, projection: Projection
) -> np.ndarray:
    """Full feature vectors of `rows` (as `Judgement.vector` builds them) with the votes of neighbours
    from `bank_rows`. For training rows the neighbours of their own source are hidden, as they will be
    for any new writer's incidents."""
    bank = bank_of(data, bank_rows)
    bank_sources = data.sources[bank_rows[data.category[bank_rows] != ""]]
    out = []
    for i in rows:
        exclude = bank_sources == data.sources[i] if same_source_hidden else None
        before = None if np.isnan(data.times[i]) else float(data.times[i])
        votes = bank.votes(data.embeddings[i], before, exclude)
        out.append(np.concatenate([data.dense[i], projection.apply(data.embeddings[i]), votes]))
    return np.stack(out)


class TrainingError(ValueError):
    """The labelled cases cannot train a head (the message says which and why)."""


def _fit_head(x: np.ndarray, y: np.ndarray, c: float, columns: np.ndarray, weights: np.ndarray) -> LinearHead:
    from sklearn.linear_model import LogisticRegression

    if len(set(y.tolist())) < 2:
        raise TrainingError(
            f"the labelled cases hold a single class ({sorted(set(y.tolist()))}): nothing to tell apart"
        )

    sub = x[:, columns]
    mean = sub.mean(axis=0)
    scale = sub.std(axis=0)
    scale[scale < 1e-9] = 1.0
    model = LogisticRegression(C=c, max_iter=5000, tol=1e-3)
    model.fit((sub - mean) / scale, y, sample_weight=weights)
    return LinearHead(
        classes=tuple(str(k) for k in model.classes_),
        columns=columns,
        mean=mean,
        scale=scale,
        coef=np.asarray(model.coef_),
        intercept=np.asarray(model.intercept_),
    )


def source_weights(sources: np.ndarray) -> np.ndarray:
    """Each source weighs the same in total: a large set by one writer must not teach its style."""
    names, counts = np.unique(sources, return_counts=True)
    per = dict(zip(names, len(sources) / (len(names) * counts), strict=True))
    return np.array([per[s] for s in sources])


def no_action_columns(width: int) -> np.ndarray:
    """The "no action" head reads the evidence, vetoes, signals and votes, not the embedding: whether
    impact ended is stated, not a matter of topic."""
    dense_width = width - EMBEDDING_COMPONENTS - len(CATEGORIES) - 1
    return np.concatenate([np.arange(dense_width), np.arange(width - len(CATEGORIES) - 1, width)])


@dataclass
class Heads:
    category: LinearHead
    subcategory: LinearHead
    no_action: LinearHead


MIN_PER_CLASS = 5  # fewer cases of either answer than this, and the no-action head learns from all cases


def no_action_rows(data: Featurised, rows: np.ndarray) -> np.ndarray:
    """The cases the "no action" head learns from: those whose evidence allows M5 and no veto holds,
    so that its probability means P(M5 | allowed) — the only case in which it is ever asked. Falls back
    to every case with a label when the allowed ones hold too few of either answer."""
    labelled = data.mitigation[rows] != ""
    allowed = labelled & data.allows_m5[rows]
    m5 = data.mitigation[rows] == "M5"
    if (allowed & m5).sum() >= MIN_PER_CLASS and (allowed & ~m5).sum() >= MIN_PER_CLASS:
        return np.asarray(allowed)
    return np.asarray(labelled)


def fit_heads(data: Featurised, rows: np.ndarray, x: np.ndarray) -> Heads:
    everything = np.arange(x.shape[1])
    weights = source_weights(data.sources[rows])
    cat = data.category[rows] != ""
    sub = data.subcategory[rows] != ""
    act = no_action_rows(data, rows)
    return Heads(
        category=_fit_head(x[cat], data.category[rows][cat], C_CATEGORY, everything, weights[cat]),
        subcategory=_fit_head(x[sub], data.subcategory[rows][sub], C_SUBCATEGORY, everything, weights[sub]),
        no_action=_fit_head(
            x[act],
            np.where(data.mitigation[rows][act] == "M5", "M5", "other"),
            C_NO_ACTION,
            no_action_columns(x.shape[1]),
            weights[act],
        ),
    )


def fit_temperature(logits: np.ndarray, truth: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of out-of-fold predictions."""
    best, best_nll = 1.0, np.inf
    for t in np.exp(np.linspace(np.log(0.25), np.log(8.0), 121)):
        z = logits / t
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        nll = -logp[np.arange(len(truth)), truth].mean()
        if nll < best_nll:
            best, best_nll = float(t), float(nll)
    return best


def _platt(logit: np.ndarray, positive: np.ndarray) -> tuple[float, float]:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=100.0).fit(logit[:, None], positive.astype(int))
    return float(model.coef_[0, 0]), float(model.intercept_[0])


def no_action_threshold(probability: np.ndarray, allows: np.ndarray, is_m5: np.ndarray) -> float:
    """The lowest threshold (most recall) whose M5 decisions meet the precision target and whose exact
    95 % lower bound meets its floor; above 1 (never decide M5) when no threshold does."""
    candidates = sorted({float(p) for p in probability[allows]}, reverse=True)
    chosen = 1.01
    for threshold in candidates:
        decided = allows & (probability >= threshold)
        n, k = int(decided.sum()), int((decided & is_m5).sum())
        if n and k / n >= M5_PRECISION and clopper_pearson(k, n)[0] >= M5_PRECISION_LOW:
            chosen = threshold
    return chosen


def needs_human_threshold(confidence: np.ndarray, right: np.ndarray) -> float:
    """The lowest category probability above which out-of-source answers were right at least
    COVERED_ACCURACY of the time (and everything below it goes to a human)."""
    order = np.argsort(-confidence)
    hits = np.cumsum(right[order])
    counts = np.arange(1, len(order) + 1)
    ok = hits / counts >= COVERED_ACCURACY
    if not ok.any():
        return 1.01
    last = int(np.nonzero(ok)[0].max())
    return float(confidence[order][last])


@dataclass
class OutOfSource:
    """Calibrated out-of-source predictions for every row, from models that never saw its source."""

    rows: np.ndarray
    category: np.ndarray  # probabilities (rows, 4) in CATEGORIES order
    no_action: np.ndarray  # probability of M5


def _index(classes: tuple[str, ...], labels: np.ndarray) -> np.ndarray:
    return np.array([classes.index(label) for label in labels])


def fit_judgement(
    data: Featurised, rows: np.ndarray, metadata: dict[str, Any] | None = None
) -> tuple[Judgement, OutOfSource]:
    """A judgement trained on `rows`; its temperatures and thresholds come from leave-one-source-out
    predictions over those rows, which are returned too."""
    sources = sorted(set(data.sources[rows]))
    cat_logits = np.zeros((len(rows), len(CATEGORIES)))
    sub_logits: dict[int, dict[str, float]] = {}
    m5_logit = np.zeros(len(rows))
    for source in sources:
        held = rows[data.sources[rows] == source]
        train = rows[data.sources[rows] != source]
        projection = projection_of(data, train)
        heads = fit_heads(data, train, vectors(data, train, train, True, projection))
        x_held = vectors(data, held, train, False, projection)
        position = np.nonzero(data.sources[rows] == source)[0]
        raw = heads.category.logits(x_held)
        for k, name in enumerate(heads.category.classes):
            cat_logits[position, CATEGORIES.index(name)] = raw[:, k]
        missing = [c for c in CATEGORIES if c not in heads.category.classes]
        for name in missing:
            cat_logits[position, CATEGORIES.index(name)] = -30.0
        sub_raw = heads.subcategory.logits(x_held)
        for p, logits in zip(position, sub_raw, strict=True):
            sub_logits[int(p)] = dict(zip(heads.subcategory.classes, logits.tolist(), strict=True))
        towards_m5 = 1.0 if heads.no_action.classes[1] == "M5" else -1.0  # scikit-learn points to classes_[1]
        m5_logit[position] = towards_m5 * heads.no_action.logits(x_held)[:, 1]

    labelled = data.category[rows] != ""
    t_category = fit_temperature(cat_logits[labelled], _index(CATEGORIES, data.category[rows][labelled]))
    with_action = no_action_rows(data, rows)
    is_m5 = data.mitigation[rows] == "M5"
    slope, shift = _platt(m5_logit[with_action], is_m5[with_action])
    m5_probability = 1.0 / (1.0 + np.exp(-(slope * m5_logit + shift)))
    scaled = cat_logits / t_category
    scaled -= scaled.max(axis=1, keepdims=True)
    cat_probability = np.exp(scaled) / np.exp(scaled).sum(axis=1, keepdims=True)

    threshold = no_action_threshold(m5_probability[with_action], data.allows_m5[rows][with_action], is_m5[with_action])
    right = np.array(CATEGORIES)[cat_probability.argmax(axis=1)] == data.category[rows]
    needs_human_below = needs_human_threshold(cat_probability.max(axis=1)[labelled], right[labelled])
    t_sub = _subcategory_temperature(sub_logits, data.subcategory[rows])

    projection = projection_of(data, rows)
    final = fit_heads(data, rows, vectors(data, rows, rows, True, projection))
    judgement = Judgement(
        metadata=dict(metadata or {}),
        category=_with_temperature(final.category, t_category),
        subcategory=_with_temperature(final.subcategory, t_sub),
        no_action=LinearHead(
            classes=("other", "M5") if final.no_action.classes == ("M5", "other") else final.no_action.classes,
            columns=final.no_action.columns,
            mean=final.no_action.mean,
            scale=final.no_action.scale,
            coef=_positive_is_m5(final.no_action) * slope,
            intercept=_positive_is_m5_intercept(final.no_action) * slope + shift,
        ),
        bank=bank_of(data, rows),
        projection=projection,
        no_action_threshold=threshold,
        needs_human_below=needs_human_below,
    )
    return judgement, OutOfSource(rows=rows, category=cat_probability, no_action=m5_probability)


def _positive_is_m5(head: LinearHead) -> np.ndarray:
    """scikit-learn's binary coefficients point to classes_[1]; make them point to M5."""
    return np.asarray(head.coef if head.classes[1] == "M5" else -head.coef)


def _positive_is_m5_intercept(head: LinearHead) -> np.ndarray:
    return np.asarray(head.intercept if head.classes[1] == "M5" else -head.intercept)


def _with_temperature(head: LinearHead, temperature: float) -> LinearHead:
    return LinearHead(head.classes, head.columns, head.mean, head.scale, head.coef, head.intercept, temperature)


def _subcategory_temperature(logits: dict[int, dict[str, float]], truth: np.ndarray) -> float:
    """Fitted on the rows whose true subcategory the fold's head knew (a subcategory seen in one source
    only has no out-of-source prediction to calibrate against)."""
    rows = [(p, row) for p, row in logits.items() if truth[p] and truth[p] in row]
    if not rows:
        return 1.0
    names = sorted({name for _, row in rows for name in row})
    matrix = np.array([[row.get(name, -30.0) for name in names] for _, row in rows])
    return fit_temperature(matrix, np.array([names.index(truth[p]) for p, _ in rows]))
