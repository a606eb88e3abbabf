"""The dashboard over real HTTP (uvicorn) and in the system Chromium through Playwright: the runs list,
a comparison of two recorded eval runs and the gap report render with their charts and without console
errors; screenshots go to artifacts/screenshots/. Plus its doors: auth, escaping, CSP, no path tricks."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from evals.dataset import load_dataset
from evals.gaps import gap_report

# The server (eval runs, a triaged incident, the service with a fake cluster and approvers) and the
# browser are shared with tests/test_dashboard_dri.py: tests/dashboard_fixture.py.
from tests.dashboard_fixture import DATASET, SHOTS, TOKEN
from tests.waiting import until


def _run_ids(server: dict[str, Any]) -> list[str]:
    import re

    return list(dict.fromkeys(re.findall(r'href="/dashboard/runs/([0-9a-f]{32})"', server["runs_html"])))


# ---- doors ------------------------------------------------------------------------------------


def test_the_dashboard_needs_the_api_token(server):
    base = server["base"]
    assert httpx.get(f"{base}/dashboard").status_code == 401
    assert httpx.get(f"{base}/dashboard", auth=("dri", "wrong")).status_code == 401
    assert "WWW-Authenticate" in httpx.get(f"{base}/dashboard").headers
    assert httpx.get(f"{base}/dashboard", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    page = httpx.get(f"{base}/dashboard", auth=("anyone", TOKEN))
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_the_charting_library_is_served_from_the_package(server):
    js = httpx.get(f"{server['base']}/dashboard/static/vendor/chart-4.6.1.umd.min.js")
    assert js.status_code == 200 and "Chart.js v4.6.1" in js.text[:200]
    assert "cdn" not in server["runs_html"].lower()
    assert "https://" not in server["runs_html"]


def test_a_dataset_name_cannot_reach_outside_the_datasets_folder(server):
    for name in ("../../pyproject.toml", "..%2F..%2Fetc%2Fpasswd", "/etc/passwd"):
        assert (
            httpx.get(f"{server['base']}/dashboard/gaps", params={"dataset": name}, auth=("d", TOKEN)).status_code
            == 404
        )


def test_incident_text_is_escaped_on_the_page(server):
    base = server["base"]
    hostile = {
        "id": "INC-XSS",
        "title": "<script>alert(1)</script> latency",
        "description": "<img src=x onerror=alert(2)> requests slow",
    }
    created = httpx.post(f"{base}/incidents", json=hostile, headers={"Authorization": f"Bearer {TOKEN}"})
    assert created.status_code == 202
    page = until(
        lambda: (r := httpx.get(f"{base}/dashboard/incidents/INC-XSS", auth=("d", TOKEN))).status_code == 200 and r,
        "the incident page",
    )
    assert "<script>alert(1)</script>" not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "<img src=x" not in page.text


def test_an_incident_page_states_what_investigation_could_not_look_at(server):
    # The fixture triaged examples/timeout-408-streaming.json with no cluster and no Prometheus.
    page = httpx.get(f"{server['base']}/dashboard/incidents/EX-408-streaming", auth=("d", TOKEN))
    assert page.status_code == 200 and "<h3>Investigation</h3>" in page.text
    assert "not looked at — kubernetes: no cluster configured" in page.text
    assert "not looked at — prometheus: no Prometheus configured: no trend" in page.text


def test_unknown_runs_and_incidents_are_404(server):
    base = server["base"]
    assert httpx.get(f"{base}/dashboard/runs/nope", auth=("d", TOKEN)).status_code == 404
    assert httpx.get(f"{base}/dashboard/compare", params={"a": "x", "b": "y"}, auth=("d", TOKEN)).status_code == 404
    assert httpx.get(f"{base}/dashboard/incidents/nope", auth=("d", TOKEN)).status_code == 404


# ---- in the browser ---------------------------------------------------------------------------


@pytest.fixture
def page(browser: Any, server: dict[str, Any], request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(
        http_credentials={"username": "dri", "password": TOKEN}, viewport={"width": 1400, "height": 1000}
    )
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.problems = problems  # type: ignore[attr-defined]
    yield page
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{request.node.name}.png"), full_page=True)
    context.close()
    assert problems == [], problems


def _charts(page: Any) -> dict[str, dict[str, Any]]:
    """What Chart.js drew, per canvas id: chart type, dataset labels and point counts."""
    page.wait_for_selector("body[data-charts]", state="attached", timeout=15_000)
    return page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('canvas')].map(c => {
            const chart = Chart.getChart(c);
            const drawn = (d) => ({label: d.label, points: d.data.filter(v => v !== null).length});
            const seen = chart && {type: chart.config.type, width: c.width, datasets: chart.data.datasets.map(drawn)};
            return [c.id, seen || null];
        }))"""
    )


def test_the_runs_list_shows_both_runs_over_time_with_the_m5_target(page, server):
    page.goto(f"{server['base']}/dashboard")
    charts = _charts(page)
    assert page.locator("#runs-table tbody tr").count() == 2
    assert page.get_by_role("link", name="current").count() == 1
    runs = charts["runs-chart"]
    assert runs is not None and runs["width"] > 0
    by_label = {d["label"]: d["points"] for d in runs["datasets"]}
    assert by_label["category accuracy"] == 2 and by_label["M5 precision target"] == 2


def test_a_comparison_shows_deltas_significance_and_the_flipped_cases_with_their_texts(page, server):
    page.goto(f"{server['base']}/dashboard")
    page.wait_for_selector("#runs-table")
    rows = page.locator("#runs-table tbody tr")
    # A = the current rulebook, B = the degraded one.
    current = rows.filter(has=page.get_by_role("link", name="current", exact=True))
    degraded = rows.filter(has=page.get_by_role("link", name="no-timeout-rules"))
    current.locator("input[name=a]").check()
    degraded.locator("input[name=b]").check()
    page.get_by_role("button", name="Compare A → B").click()
    page.wait_for_url("**/dashboard/compare?**")
    charts = _charts(page)
    mcnemar = page.locator("#mcnemar").inner_text()
    assert "p = " in mcnemar and "significant" in mcnemar
    flipped = page.locator("#flipped-table tbody tr")
    assert flipped.count() > 0
    first = flipped.first.inner_text()
    timeout_cases = {c.id: c for c in load_dataset(DATASET, "test") if c.labels["subcategory"] == "timeout"}
    case_id = first.split()[0]
    assert case_id in timeout_cases  # removing the timeout rules flips timeout incidents
    assert timeout_cases[case_id].incident.title in first  # with the incident's own text
    deltas = page.locator("#deltas-table").inner_text()
    assert "category_accuracy" in deltas and "-0." in deltas
    assert charts["deltas-chart"] is not None and len(charts["deltas-chart"]["datasets"]) == 2


def test_the_gap_report_renders_the_papers_tables_and_its_charts(page, server):
    page.goto(f"{server['base']}/dashboard/gaps?dataset=paper156")
    charts = _charts(page)
    report = gap_report(load_dataset(DATASET))
    table2 = page.locator("#table2 tbody tr")
    for row, expected in zip(table2.all(), report["table2"], strict=True):
        cells = row.locator("td").all_inner_texts()
        assert cells[0] == expected["category"] and int(cells[1]) == expected["count"]
    table3 = page.locator("#table3 tbody tr").all()
    for row, expected in zip(table3, report["table3"], strict=True):
        cells = row.locator("td").all_inner_texts()
        assert cells[0] == expected["action"] and int(cells[3]) == expected["count"]
    assert f"Auto-detected: {report['auto_detected']}/{report['n']}" in page.locator("#gaps-source").inner_text()
    for name in ("categories-chart", "actions-chart", "lifecycle-chart"):
        assert charts[name] is not None, name
    assert sum(d["points"] for d in charts["lifecycle-chart"]["datasets"]) == 3 * len(report["lifecycle"])


def test_the_gap_report_over_the_store_says_what_mitigate_closed(page, server):
    page.goto(f"{server['base']}/dashboard/gaps?since=2020-01-01")
    _charts(page)
    outcome = page.locator("#mitigate-outcome").inner_text()
    assert "closed without a human" in outcome
    assert "incidents handled by mitigate since 2020-01-01" in page.locator("#gaps-source").inner_text()


def test_an_incident_page_shows_its_timeline(page, server):
    page.goto(f"{server['base']}/dashboard/incidents")
    page.locator("#incidents-table a").filter(has_text="408").first.click()
    page.wait_for_selector("ol.timeline li")
    nodes = page.locator("ol.timeline li strong").all_inner_texts()
    assert nodes[0] == "intake" and nodes[-1] == "report"
    assert "classify" in nodes and "plan" in nodes


def test_screenshots_are_written_as_artifacts():
    # Runs last in this module: the page fixture wrote one screenshot per browser test.
    shots = {p.stem for p in SHOTS.glob("*.png")} if SHOTS.exists() else set()
    assert {"test_the_runs_list_shows_both_runs_over_time_with_the_m5_target"} <= shots
    shutil.disk_usage(SHOTS)  # the folder exists and is readable
