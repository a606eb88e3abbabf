// Draws the dashboard's charts from the inert JSON the server put in #chart-data.
// Each page names its view on <body data-view>; when every chart is drawn, body gets data-charts="N".
"use strict";

(function () {
  const COLORS = ["#2563eb", "#16a34a", "#d97706", "#dc2626", "#7c3aed", "#0891b2", "#64748b"];
  const data = JSON.parse(document.getElementById("chart-data").textContent || "{}");
  const charts = [];

  function draw(id, config) {
    const canvas = document.getElementById(id);
    if (!canvas) return;
    config.options = Object.assign({ responsive: true, maintainAspectRatio: false, animation: false }, config.options || {});
    charts.push(new Chart(canvas, config));
  }

  const percentAxis = { min: 0, max: 1, ticks: { callback: (v) => Math.round(v * 100) + "%" } };
  // Readable numbers on every axis: never "3.500000E-5".
  const plain = (v) => (Math.abs(v) >= 1000 ? Math.round(v).toLocaleString("en") : String(Number(v.toPrecision(3))));
  const hours = (v) => (v === 0 ? "0" : v < 1 / 60 ? Math.round(v * 3600) + " s" : v < 1 ? Math.round(v * 60) + " min" : plain(v) + " h");
  const points = (v) => (v > 0 ? "+" : "") + Math.round(v * 100) + " pt";

  const views = {
    runs() {
      const series = data.series || {};
      const datasets = Object.keys(series).map((name, i) => ({
        label: name.replace(/_/g, " "), data: series[name], borderColor: COLORS[i], backgroundColor: COLORS[i], spanGaps: true,
      }));
      datasets.push({
        label: "M5 precision target", data: (data.labels || []).map(() => data.m5_target),
        borderColor: "#dc2626", backgroundColor: "#dc2626", borderDash: [6, 4], pointRadius: 0, fill: false,
      });
      datasets.push({
        label: "M5 precision, exact 95% lower bound", data: data.m5_low || [], spanGaps: true,
        borderColor: COLORS[3], backgroundColor: COLORS[3], borderDash: [2, 3], pointStyle: "triangle",
      });
      draw("runs-chart", { type: "line", data: { labels: data.labels, datasets }, options: { scales: { y: percentAxis } } });
    },
    run() {
      draw("calibration-chart", {
        type: "bar",
        data: {
          labels: data.labels,
          datasets: [
            { label: "category accuracy", data: data.accuracy, backgroundColor: COLORS[0] },
            { label: "mean confidence", data: data.confidence, backgroundColor: COLORS[6] },
          ],
        },
        options: { scales: { y: percentAxis } },
      });
    },
    compare() {
      draw("deltas-chart", {
        type: "bar",
        data: {
          labels: (data.labels || []).map((l) => l.replace(/_/g, " ")),
          datasets: [
            { label: "95% interval of the delta", data: (data.ci || []).map((c) => (c[0] === null ? null : [c[0], c[1]])), backgroundColor: "rgba(37,99,235,0.3)" },
            { type: "line", label: "delta (B - A)", data: data.delta, showLine: false, pointRadius: 5, borderColor: COLORS[3], backgroundColor: COLORS[3] },
          ],
        },
        options: { indexAxis: "y", scales: { x: { suggestedMin: -0.2, suggestedMax: 0.2, ticks: { callback: points } } } },
      });
    },
    gaps() {
      const c = data.categories || { labels: [], share: [] };
      draw("categories-chart", {
        type: "bar",
        data: { labels: c.labels, datasets: [{ label: "share of incidents", data: c.share, backgroundColor: COLORS[0], borderColor: COLORS[0] }] },
        options: { scales: { y: percentAxis } },
      });
      const a = data.actions || { labels: [], auto: [], human: [] };
      draw("actions-chart", {
        type: "bar",
        data: {
          labels: a.labels,
          datasets: [
            { label: "auto-detected", data: a.auto, backgroundColor: COLORS[0], borderColor: COLORS[0] },
            { label: "reported by a human", data: a.human, backgroundColor: COLORS[2], borderColor: COLORS[2] },
          ],
        },
        options: { scales: { x: { stacked: true }, y: { stacked: true, ticks: { precision: 0, callback: plain } } } },
      });
      const l = data.lifecycle || { labels: [] };
      draw("lifecycle-chart", {
        type: "line",
        data: {
          labels: l.labels,
          datasets: [
            { label: "TTM P50 (h)", data: l.ttm_p50, borderColor: COLORS[0], backgroundColor: COLORS[0] },
            { label: "TTM P75 (h)", data: l.ttm_p75, borderColor: COLORS[3], backgroundColor: COLORS[3] },
            { label: "TTD P75 (h)", data: l.ttd_p75, borderColor: COLORS[6], backgroundColor: COLORS[6] },
          ],
        },
        options: { scales: { y: { beginAtZero: true, ticks: { callback: hours } } } },
      });
    },
  };

  const view = document.body.dataset.view;
  if (views[view]) views[view]();
  document.body.dataset.charts = String(charts.length);
})();
