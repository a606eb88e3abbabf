"""Canonical signals: map the metric names teams send to the names every rule and model reads.

The mapping is data (`canonical_signals.yaml`). An incident's own canonical reading always wins over
a converted one, and names that map to nothing are returned so the report can show them as unread.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

DEFAULT_CANONICAL = Path(__file__).with_name("canonical_signals.yaml")

# The names of docs/datasets.md ("signals") plus the hardware readings the no-action vetoes use.
CANONICAL_NAMES = frozenset(
    {
        "sla",
        "sla_target",
        "error_rate",
        "http_408_rate",
        "http_429_rate",
        "http_5xx_rate",
        "http_4xx_rate",
        "ttft_p95_s",
        "tpot_p95_s",
        "e2e_p95_s",
        "queue_depth",
        "requests_running",
        "kv_cache_usage",
        "gpu_util",
        "gpu_mem_usage",
        "cpu_util",
        "mem_usage",
        "gpu_power_w",
        "pod_restarts",
        "oom_kills",
        "nodes_not_ready",
        "pods_pending",
        "replicas_available",
        "replicas_desired",
        "request_rate_rps",
        "baseline_request_rate_rps",
        "preemptions",
        "gpu_xid",
        "ecc_dbe_errors",
        "row_remap_failures",
    }
)
UNITS = frozenset({"fraction", "percent", "percent_or_fraction", "ms", "s", "count", "watts", "rps"})
# A reading about a non-production scope must not stand in for production's (a staging error rate
# is not the service's error rate); such names are left unmapped and shown.
_NON_PRODUCTION = re.compile(r"(?:^|_)(?:staging|canary|dev|test|sandbox)(?:_|$)", re.IGNORECASE)
_PEAK = "_peak"


class CanonicalSignalsError(ValueError):
    """The mapping file is unusable; the message says where."""


@dataclass(frozen=True)
class SignalMapping:
    canonical: str
    unit: str


@dataclass(frozen=True)
class SignalMap:
    version: str
    exact: dict[str, SignalMapping]
    patterns: tuple[tuple[re.Pattern[str], SignalMapping], ...]

    def lookup(self, name: str) -> SignalMapping | None:
        if name in self.exact:
            return self.exact[name]
        if _NON_PRODUCTION.search(name):
            return None
        for pattern, mapping in self.patterns:
            if pattern.match(name):
                return mapping
        return None


@dataclass(frozen=True)
class Canonicalised:
    signals: dict[str, float]  # canonical readings (the incident's own and converted ones)
    converted: dict[str, str]  # source name -> canonical name, for what was converted
    unmapped: list[str]  # names nothing reads


def _mapping(raw: Any, where: str) -> SignalMapping:
    if not isinstance(raw, dict) or raw.get("canonical") not in CANONICAL_NAMES:
        raise CanonicalSignalsError(f"{where}: 'canonical' must be one of {sorted(CANONICAL_NAMES)}")
    unit = raw.get("unit", "fraction")
    if unit not in UNITS:
        raise CanonicalSignalsError(f"{where}: unit must be one of {sorted(UNITS)}, got {unit!r}")
    return SignalMapping(str(raw["canonical"]), str(unit))


def parse_signal_map(text: str) -> SignalMap:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CanonicalSignalsError(f"canonical signals file is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise CanonicalSignalsError("canonical signals file must be a mapping")
    exact = {str(name): _mapping(raw, f"exact.{name}") for name, raw in (data.get("exact") or {}).items()}
    patterns = []
    for n, raw in enumerate(data.get("patterns") or []):
        try:
            pattern = re.compile(str(raw["match"]))
        except (KeyError, TypeError, re.error) as exc:
            raise CanonicalSignalsError(f"patterns[{n}]: bad or missing 'match': {exc}") from exc
        patterns.append((pattern, _mapping(raw, f"patterns[{n}]")))
    return SignalMap(str(data.get("version", "1")), exact, tuple(patterns))


@cache
def load_signal_map(path: Path = DEFAULT_CANONICAL) -> SignalMap:
    return parse_signal_map(Path(path).read_text(encoding="utf-8"))


def convert(value: float, unit: str) -> float:
    if unit == "percent":
        return value / 100.0
    if unit == "ms":
        return value / 1000.0
    if unit == "percent_or_fraction":
        return value / 100.0 if value > 1.0 else value
    return value


def canonicalise(signals: Mapping[str, float], signal_map: SignalMap | None = None) -> Canonicalised:
    signal_map = signal_map or load_signal_map()
    out = {name: value for name, value in signals.items() if name.removesuffix(_PEAK) in CANONICAL_NAMES}
    converted: dict[str, str] = {}
    unmapped: list[str] = []
    for name, value in signals.items():
        base = name.removesuffix(_PEAK)
        if base in CANONICAL_NAMES:
            continue
        mapping = signal_map.lookup(base)
        if mapping is None:
            unmapped.append(name)
            continue
        target = mapping.canonical + (_PEAK if name.endswith(_PEAK) else "")
        if target in out:  # the incident's own (or an earlier) reading wins
            continue
        out[target] = convert(value, mapping.unit)
        converted[name] = target
    return Canonicalised(out, converted, sorted(unmapped))
