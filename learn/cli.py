"""`mitigate model train|show` and `mitigate eval cv`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _fail(message: str) -> int:
    print(f"mitigate: error: {message}", file=sys.stderr)
    return 2


def _progress(message: str) -> None:
    print(f"[{message}]", file=sys.stderr, flush=True)


def _paths(args: argparse.Namespace) -> list[Path] | str:
    from learn.sources import DEFAULT_SOURCES, existing

    if args.sources:
        missing = [str(p) for p in args.sources if not p.exists()]
        return f"no such source: {', '.join(missing)}" if missing else list(args.sources)
    found = existing(DEFAULT_SOURCES)
    return found or "none of the default sources exists here (run from the repository root, or pass --sources)"


def cmd_model_train(args: argparse.Namespace) -> int:
    from agent.judgement import DEFAULT_ARTEFACT
    from agent.rulebook import DEFAULT_RULEBOOK, load_rulebook
    from api.settings import get_settings
    from api.wiring import shared_embedder
    from learn.model import train_model
    from learn.sources import SourceError
    from learn.train import TrainingError

    paths = _paths(args)
    if isinstance(paths, str):
        return _fail(paths)
    settings = get_settings()
    out = args.out or settings.model_path or DEFAULT_ARTEFACT
    try:
        _, metadata = train_model(
            paths,
            load_rulebook(settings.rulebook_path or DEFAULT_RULEBOOK),
            shared_embedder(),
            out,
            _progress,
        )
    except (SourceError, TrainingError) as exc:
        return _fail(f"{exc} (nothing was trained)")
    if args.json:
        print(json.dumps(metadata))
        return 0
    print(
        f"wrote {out} and {out.with_suffix('.npz').name}: model {metadata['version']}, {metadata['n_cases']} cases, "
        f"{metadata['seconds']} s"
    )
    _print_summary(metadata["cv"])
    return 0


def _print_summary(cv: dict[str, Any]) -> None:
    print(
        "out-of-source (each source predicted by a model that never saw it; `mitigate eval cv` is the nested figure):"
    )
    print(f"  {'source':<16} {'n':>4} {'category':>9} {'ECE':>6} {'M5 prec':>8} {'(low)':>6} {'M5 rec':>7}")

    def show(value: Any) -> str:
        return f"{value:.3f}" if isinstance(value, float) else "  -  "

    for name, m in cv.items():
        print(
            f"  {name:<16} {m['n']:>4} {show(m['category_accuracy']):>9} {show(m['ece']):>6} "
            f"{show(m['m5_precision']):>8} {show(m['m5_precision_low']):>6} {show(m['m5_recall']):>7}"
        )


def cmd_model_show(args: argparse.Namespace) -> int:
    from api.settings import get_settings
    from api.wiring import load_model

    settings = get_settings()
    judgement, problem = load_model(settings.model_path, settings.use_model, settings.rulebook_path)
    if judgement is None:
        print(f"mitigate: {problem}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(judgement.metadata))
        return 0
    meta = judgement.metadata
    print(f"judgement model {judgement.version}, trained {meta.get('trained_at')} on {meta.get('n_cases')} cases")
    print(
        f"  rulebook {meta.get('rulebook_version')} ({meta.get('rulebook_digest')}), "
        f"features {meta.get('feature_version')}"
    )
    print(
        f"  no action decided at probability >= {judgement.no_action_threshold:.3f}; "
        f"needs a human under {judgement.needs_human_below:.3f}"
    )
    _print_summary(meta.get("cv", {}))
    return 0


def cmd_model_check(args: argparse.Namespace) -> int:
    """Exit 0 when the artefact loads and was trained on the labelled sources as they are now."""
    from api.settings import get_settings
    from api.wiring import load_model
    from learn.sources import data_hashes

    settings = get_settings()
    judgement, problem = load_model(settings.model_path, settings.use_model, settings.rulebook_path)
    if judgement is None:
        print(f"mitigate: {problem}", file=sys.stderr)
        return 1
    paths = _paths(args)
    if isinstance(paths, str):
        return _fail(paths)
    now = data_hashes(paths)
    if now != judgement.metadata.get("data"):
        changed = sorted(set(now.items()) ^ set((judgement.metadata.get("data") or {}).items()))
        names = sorted({name for name, _ in changed})
        print(
            f"mitigate: model {judgement.version} was trained on other data ({', '.join(names)} changed); "
            "rebuild it with `mitigate model train`",
            file=sys.stderr,
        )
        return 1
    print(f"model {judgement.version} is current")
    return 0


def cmd_eval_cv(args: argparse.Namespace) -> int:
    from agent.context import MemoryRecorder
    from api.settings import get_settings
    from api.wiring import make_context, shared_embedder
    from learn.cv import cross_validate
    from learn.sources import SourceError, load_sources

    paths = _paths(args)
    if isinstance(paths, str):
        return _fail(paths)
    try:
        cases = load_sources(paths)
    except SourceError as exc:
        return _fail(str(exc))
    if len({c.source for c in cases}) < 2:
        return _fail("leave-one-source-out needs at least two sources")
    settings = get_settings().model_copy(update={"use_model": False})
    template = make_context(settings, MemoryRecorder(), propose_only=True, engine="rulebook")
    from dataclasses import replace

    template = replace(
        template, telemetry=None, sla=None, localizer=None, retriever=None, cluster=None, investigator=None
    )
    report = cross_validate(cases, template, shared_embedder(), _progress, with_cases=args.cases)
    if args.json:
        print(json.dumps(report, default=str))
        return 0
    from api.render import print_cv

    print_cv(report)
    return 0


def add_model_commands(sub: Any) -> None:
    model = sub.add_parser("model", help="the learned, calibrated judgement (train it, show it)")
    model_sub = model.add_subparsers(dest="model_command", required=True, metavar="MODEL_COMMAND")
    train = model_sub.add_parser("train", help="train on every labelled source and write the artefact")
    train.add_argument(
        "--sources", nargs="+", type=Path, help="labelled JSONL files or postmortem folders (default: the project's)"
    )
    train.add_argument("--out", type=Path, help="metadata file to write (default agent/model/judgement.json)")
    train.add_argument("--json", action="store_true", help="print the artefact's metadata as JSON")
    train.set_defaults(func=cmd_model_train)
    show = model_sub.add_parser("show", help="the loaded model: version, data, thresholds, out-of-source figures")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_model_show)
    check = model_sub.add_parser("check", help="exit 1 unless the artefact loads and was trained on today's sources")
    check.add_argument("--sources", nargs="+", type=Path, help="labelled JSONL files or postmortem folders")
    check.set_defaults(func=cmd_model_check)


def add_cv_command(eval_sub: Any) -> None:
    cv = eval_sub.add_parser(
        "cv", help="leave-one-source-out cross-validation through the graph; the headline is the worst source"
    )
    cv.add_argument("--sources", nargs="+", type=Path, help="labelled JSONL files or postmortem folders")
    cv.add_argument("--json", action="store_true", help='{"pooled": {...}, "sources": {...}, "worst_source": NAME}')
    cv.add_argument("--cases", action="store_true", help="with --json: every held-out case's prediction")
    cv.set_defaults(func=cmd_eval_cv)
