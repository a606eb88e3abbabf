"""The automation-gap report over paper156 reproduces the paper's Table 2 and Table 3 counts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.test_paper156 import TABLE2, TABLE3


def _report(fmt: str) -> str:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "api.cli",
            "report",
            "gaps",
            "--dataset",
            "evals/datasets/paper156.jsonl",
            "--format",
            fmt,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_tables_2_and_3_and_figure_1_counts():
    report = json.loads(_report("json"))
    subcategories = {
        (row["category"], s["subcategory"]): s["count"] for row in report["table2"] for s in row["subcategories"]
    }
    assert subcategories == TABLE2
    assert {row["action"]: row["count"] for row in report["table3"]} == TABLE3
    assert report["auto_detected"] == 115
    assert sum(report["crosstab"]["A2"].values()) == 25 and report["crosstab"]["A2"]["M6"] == 1
    assert report["lifecycle"]["2025-04"]["ttm_p75"] == pytest.approx(32.0, rel=0.02)
    assert report["lifecycle"]["2025-05"]["ttm_p75"] == pytest.approx(49.0, rel=0.02)


def test_markdown_and_csv_carry_the_same_numbers():
    markdown, csv_text = _report("md"), _report("csv")
    assert "| A3 | 94 | 60.3% |" in markdown and "| M5 | Manual triage / monitor (no action) |" in markdown
    assert "table3,M5,count,75" in csv_text and "crosstab,A2,M6,1" in csv_text
