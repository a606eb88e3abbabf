"""Which files of an ingestion are new, changed, unchanged, moved, renamed or in conflict over an id:
the decisions of `PostmortemIndex.ingest`, made against the index's catalog before anything is written."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tools.postmortem_format import Postmortem

Loaded = tuple[str, Path, Postmortem]  # (resolved path, path as given, parsed postmortem)


@dataclass
class IngestReport:
    added: list[str] = field(default_factory=list)  # postmortem ids new to the index
    updated: list[str] = field(default_factory=list)  # ids whose file changed: old chunks replaced
    unchanged: int = 0  # files whose content is already indexed under their id (also moved or copied files)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason naming the path); skipped
    removed: list[str] = field(default_factory=list)  # ids dropped: file gone (prune=True) or id renamed
    chunks: int = 0  # chunks written


@dataclass(frozen=True)
class Pending:
    path: str
    postmortem: Postmortem
    updated: bool
    drop_paths: tuple[str, ...] = ()  # catalog rows of files that no longer hold this id


@dataclass
class IngestPlan:
    parsed: dict[str, Postmortem]  # resolved path -> postmortem, for every file that keeps its id
    pending: list[Pending]  # to write (new or changed)
    moved: list[tuple[str, str]]  # (old path, new path): same content, nothing to embed
    renamed_away: set[str]  # ids no file holds any more after this run


def plan_ingestion(
    loaded: list[Loaded],
    catalog: dict[str, tuple[str, str]],
    broken: set[str],
    report: IngestReport,
    tick: Callable[..., None],
) -> IngestPlan:
    """Decide what to do with each loaded file against `catalog` (path -> (digest, id)). Conflicts and
    unchanged files are settled in `report` and counted with `tick`; `broken` holds the resolved paths
    of files that failed to parse (they still hold their id)."""
    owners: dict[str, set[str]] = defaultdict(set)
    for known_path, (_, pid) in catalog.items():
        owners[pid].add(known_path)

    # Several files of this run claiming one id: the file that already holds it keeps it, else the first.
    claims: dict[str, list[tuple[str, Path, Postmortem]]] = defaultdict(list)
    for claim in loaded:
        claims[claim[2].meta.id].append(claim)
    parsed: dict[str, Postmortem] = {}
    for pid, claimants in claims.items():
        winner = next((c for c in claimants if c[0] in owners.get(pid, set())), claimants[0])
        parsed[winner[0]] = winner[2]
        for key, file, _ in claimants:
            if key != winner[0]:
                report.failed.append((str(file), f"{file}: id {pid!r} is also used by {winner[1]}; ids must be unique"))
                broken.add(key)
                tick()

    def still_holds(other: str, pid: str) -> bool:
        if other in parsed:
            return parsed[other].meta.id == pid
        return other in broken or Path(other).exists()

    pending: list[Pending] = []
    moved: list[tuple[str, str]] = []
    renamed_away: set[str] = set()
    for key, postmortem in parsed.items():
        pid = postmortem.meta.id
        known = catalog.get(key)
        if known == (postmortem.digest, pid):
            report.unchanged += 1
            tick()
            continue
        others = sorted(owners.get(pid, set()) - {key})
        holder = next((o for o in others if still_holds(o, pid)), None)
        if holder is not None and catalog.get(holder) == (postmortem.digest, pid):
            # The same file in a second place (another checkout of the same repository): the index
            # already answers with exactly this content, so there is nothing to do and nothing wrong.
            report.unchanged += 1
            tick()
            continue
        if holder is not None:
            shown = next(str(f) for k, f, _ in loaded if k == key)
            report.failed.append((shown, f"{shown}: id {pid!r} is already indexed from {holder}; ids must be unique"))
            tick()
            continue
        if known is None and len(others) == 1 and catalog[others[0]] == (postmortem.digest, pid):
            moved.append((others[0], key))  # same content under a new path: nothing to embed
            report.unchanged += 1
            tick()
            continue
        if known is not None and known[1] != pid and not (owners[known[1]] - {key}):
            renamed_away.add(known[1])
        pending.append(Pending(key, postmortem, updated=bool(owners.get(pid)), drop_paths=tuple(others)))
    renamed_away -= {p.postmortem.meta.id for p in pending}
    return IngestPlan(parsed, pending, moved, renamed_away)
