"""The dashboard as a DRI and a manager use it, in Debian's Chromium through Playwright: every page at
1440 and 390 px without a console error or a sideways scroll, M5 precision with its exact interval, the
compare page's cost deltas and the gate's verdict, readable axes, the incident list's filters, approving
from the incident page (confirmed, as yourself), HTML error pages, and /docs with no network.
Screenshots go to artifacts/screenshots/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

from api.dashboard_data import incident_view
from evals.metrics import clopper_pearson
from tests.approvers import TOKENS
from tests.dashboard_fixture import SHOTS, TOKEN
from tests.waiting import until

NODE = {
    "id": "INC-NODE-7",
    "title": "XID 79 on node aks-gpu-7; its pods fail, still failing",
    "alert": {
        "labels": {"alertname": "GPUXid", "namespace": "llm-serving", "node": "aks-gpu-7", "severity": "critical"}
    },
}
WIDTHS = {"desktop": {"width": 1440, "height": 900}, "phone": {"width": 390, "height": 844}}


def _api(server: dict[str, Any], path: str) -> Any:
    return httpx.get(f"{server['base']}{path}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).json()


@pytest.fixture(scope="module")
def paused(server: dict[str, Any]) -> dict[str, Any]:
    """An incident whose run waits for approval of a high-risk node drain."""
    created = httpx.post(f"{server['base']}/incidents", json=NODE, headers={"Authorization": f"Bearer {TOKEN}"})
    assert created.status_code == 202, created.text
    timeline = until(
        lambda: (
            (t := _api(server, f"/incidents/{NODE['id']}"))
            and t["runs"]
            and t["runs"][0]["status"] == "awaiting_approval"
            and t
        ),
        "the run to wait for approval",
    )
    return {"incident": NODE["id"], "run": timeline["runs"][0]["id"]}


def _eval_ids(server: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(re.findall(r'href="/dashboard/runs/([0-9a-f]{32})"', server["runs_html"])))


def _open(
    browser: Any, server: dict[str, Any], viewport: dict[str, int], user: str = "dri", password: str = TOKEN
) -> Any:
    context = browser.new_context(http_credentials={"username": user, "password": password}, viewport=viewport)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.problems = problems  # type: ignore[attr-defined]
    return page


@pytest.fixture
def pages(browser: Any, server: dict[str, Any]) -> Iterator[Any]:
    opened: list[Any] = []

    def make(viewport: dict[str, int] = WIDTHS["desktop"], user: str = "dri", password: str = TOKEN) -> Any:
        page = _open(browser, server, viewport, user, password)
        opened.append(page)
        return page

    yield make
    for page in opened:
        problems = page.problems
        page.context.close()
        assert problems == [], problems


def _paths(server: dict[str, Any], paused: dict[str, Any]) -> dict[str, str]:
    a, b = _eval_ids(server)[:2]
    return {
        "runs": "/dashboard",
        "run": f"/dashboard/runs/{a}",
        "compare": f"/dashboard/compare?a={a}&b={b}",
        "gaps": "/dashboard/gaps?dataset=paper156",
        "gaps-store": "/dashboard/gaps?since=2020-01-01",
        "incidents": "/dashboard/incidents",
        "incident": f"/dashboard/incidents/{paused['incident']}",
        "missing": "/dashboard/incidents/no-such-incident",
    }


@pytest.mark.parametrize("width", ["desktop", "phone"])
def test_every_page_fits_the_screen_without_errors(pages, server, paused, width):
    for name, path in _paths(server, paused).items():
        page = pages(WIDTHS[width])
        page.goto(f"{server['base']}{path}")
        page.wait_for_selector("body[data-charts]", state="attached", timeout=15_000)
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{name} scrolls sideways by {overflow}px at {width}"
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"dri-{name}-{width}.png"), full_page=True)
        if name == "missing":  # an HTML page, and the browser's note of its 404 is the only console error
            assert page.locator("#error h1").inner_text().startswith("Not found")
            page.problems[:] = [p for p in page.problems if "404" not in p]


def test_m5_precision_shows_its_counts_and_exact_interval(pages, server):
    page = pages()
    page.goto(f"{server['base']}/dashboard")
    cells = page.locator("#runs-table td.m5").all_inner_texts()
    assert cells
    for cell in cells:
        found = re.search(r"\((\d+)/(\d+); ([\d.]+)%–([\d.]+)%\)", cell)
        assert found, cell
        right, decided = int(found[1]), int(found[2])
        low, high = clopper_pearson(right, decided)
        assert found[3] == f"{low:.1%}"[:-1] and found[4] == f"{high:.1%}"[:-1]
    page.goto(f"{server['base']}/dashboard/runs/{_eval_ids(server)[0]}")
    assert "exact, Clopper-Pearson" in page.locator("#m5-precision").inner_text()


def test_compare_shows_cost_deltas_and_the_gates_verdict(pages, server):
    from api.settings import Settings
    from api.wiring import open_store
    from evals.compare import compare, gate, load_run

    a, b = _eval_ids(server)[:2]
    page = pages()
    page.goto(f"{server['base']}/dashboard/compare?a={a}&b={b}")
    sessions = open_store(Settings(database_url=f"sqlite:///{server['tmp']}/dash.db")).sessions
    (ca, fa), (cb, fb) = load_run(a, sessions), load_run(b, sessions)
    reasons = gate(compare(ca, cb, 200, fa, fb))
    verdict = page.locator("#verdict-text").inner_text()
    if reasons:
        assert (
            verdict.startswith("B is significantly worse")
            and page.locator("#verdict h2").inner_text() == "Verdict: no-go"
        )
    else:
        assert verdict == "B is not worse on any gated metric"
    costs = page.locator("#costs-table tbody tr td:first-child").all_inner_texts()
    assert {"latency_ms_p50", "latency_ms_p95", "tokens", "cost"} <= set(costs)


def test_gap_charts_have_readable_axes_and_legends_that_match(pages, server):
    page = pages()
    page.goto(f"{server['base']}/dashboard/gaps?dataset=paper156.jsonl")
    page.wait_for_selector("body[data-charts]", state="attached")
    assert page.locator("select[name=dataset]").input_value() == "paper156"  # ?dataset= is honoured
    seen = page.evaluate(
        """() => [...document.querySelectorAll('canvas')].map(c => {
            const chart = Chart.getChart(c);
            const ticks = Object.values(chart.scales).flatMap(s => s.ticks.map(t => String(t.label)));
            const legend = chart.legend.legendItems.map(i => i.fillStyle);
            const colours = chart.data.datasets.map(d => d.backgroundColor);
            return {id: c.id, ticks, legend, colours};
        })"""
    )
    assert len(seen) == 3
    for chart in seen:
        assert not [t for t in chart["ticks"] if re.search(r"\d[eE][-+]?\d", t)], chart
        assert chart["legend"] == chart["colours"], chart  # each legend swatch is its bars' colour


def test_the_incident_list_filters_and_searches(pages, server, paused):
    page = pages(WIDTHS["phone"])
    page.goto(f"{server['base']}/dashboard/incidents?status=waiting")
    rows = page.locator("#incidents-table tbody tr")
    assert rows.count() >= 1 and all("awaiting_approval" in r for r in rows.all_inner_texts())
    assert "critical" in rows.first.inner_text()
    page.fill("input[name=q]", "aks-gpu-7")
    page.select_option("select[name=status]", "")
    page.click("#incident-filter button")
    page.wait_for_url("**q=aks-gpu-7**")
    assert [t for t in page.locator("#incidents-table a").all_inner_texts()] == [NODE["title"]]
    page.goto(f"{server['base']}/dashboard/incidents?q=nothing-like-this")
    assert page.locator(".empty").inner_text() == "No incident matches."


def test_a_reader_cannot_approve_and_an_approver_approves_from_the_page(pages, server, paused):
    url = f"{server['base']}/dashboard/incidents/{paused['incident']}"
    reader = pages()
    reader.goto(url)
    assert "Sign in with your approver id" in reader.locator(f"#run-{paused['run']}").inner_text()
    page = pages(WIDTHS["phone"], user="alice", password=TOKENS["alice"])
    page.goto(url)
    run = page.locator(f"#run-{paused['run']}")
    assert "Risk high" in run.inner_text() and "dry-run-ok" in run.locator(".dry-run").inner_text()
    page.fill("input[name=reason]", "XID 79: drain it")
    page.click("button[value=approve]")  # the confirmation is not ticked: the browser does not send it
    assert page.url == url and _api(server, f"/runs/{paused['run']}")["status"] == "awaiting_approval"
    page.check("input[name=confirm]")
    page.click("button[value=approve]")
    page.wait_for_url("**message=**")
    assert "approval by alice recorded" in page.locator("#notice").inner_text()
    until(lambda: _api(server, f"/runs/{paused['run']}")["status"] == "mitigated", "the approved run to finish")
    page.goto(url)
    text = page.locator(f"#run-{paused['run']}").inner_text()
    assert "approve by alice: XID 79: drain it" in text and "SLA checks" in text
    assert (server["tmp"] / "cluster.log").read_text().count("cordon_and_evict") == 1


def test_the_newest_run_comes_first():
    timeline = {
        "incident": {},
        "runs": [
            {"id": "old", "status": "mitigated", "steps": [{"at": "2026-12-01T10:00:00"}], "sla_checks": []},
            {"id": "queued", "status": "queued", "steps": [], "sla_checks": []},
            {"id": "new", "status": "escalated", "steps": [{"at": "2026-12-02T10:00:00"}], "sla_checks": []},
        ],
    }
    assert [r["id"] for r in incident_view(timeline)["runs"]] == ["queued", "new", "old"]


def test_sla_checks_are_shown_with_their_numbers():
    check = {
        "status": "verified",
        "details": {
            "status": "verified",
            "reason": "SLA 0.912 -> 0.996 (target 0.99), held for 60 s; http_5xx_rate 0.06 -> 0.001 (must be < 0.01)",
            "baseline_sla": 0.912,
            "sla": 0.9961,
            "sla_target": 0.99,
            "ttm_s": 412.0,
        },
    }
    timeline = {"incident": {}, "runs": [{"id": "r", "status": "mitigated", "steps": [], "sla_checks": [check]}]}
    line = incident_view(timeline)["runs"][0]["sla_lines"][0]["text"]
    assert line.startswith("SLA 0.9120 → 0.9961 (target 0.99) — SLA 0.912 -> 0.996")
    assert line.endswith("time to mitigate 412 s")


def test_errors_are_pages_for_browsers_and_json_for_clients(server):
    base = server["base"]
    page = httpx.get(f"{base}/dashboard/incidents/nope", auth=("d", TOKEN), headers={"Accept": "text/html"})
    assert page.status_code == 404 and "text/html" in page.headers["content-type"] and "Not found" in page.text
    unauth = httpx.get(f"{base}/dashboard", headers={"Accept": "text/html"})
    assert unauth.status_code == 401 and "WWW-Authenticate" in unauth.headers and "<html" in unauth.text
    bad = httpx.get(f"{base}/dashboard/gaps", params={"since": "yesterday"}, auth=("d", TOKEN))
    assert bad.status_code == 422 and "since" in bad.text and "<html" in bad.text
    api = httpx.get(
        f"{base}/incidents/nope", headers={"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"}
    )
    assert api.status_code == 404 and api.json() == {"detail": "no incident nope"}


def test_the_api_docs_work_with_no_network(pages, server):
    page = pages()
    outside: list[str] = []

    def only_loopback(route: Any) -> None:
        if urlparse(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_loopback)
    page.goto(f"{server['base']}/docs")
    page.wait_for_selector(".swagger-ui .info .title", timeout=15_000)
    assert "mitigate" in page.locator(".swagger-ui .info .title").inner_text()
    assert page.locator(".opblock").count() > 5 and outside == []
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "dri-docs.png"))
