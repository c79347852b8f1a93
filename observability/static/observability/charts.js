// CHOM's metric charts and log viewer: plain JS over our own JSON endpoints, drawn with uPlot
// (vendored under vendor/uplot, no CDN).
(function () {
  "use strict";

  function message(box, text) {
    box.textContent = "";
    var p = document.createElement("p");
    p.className = "muted";
    p.textContent = text;
    box.appendChild(p);
  }

  function errorText(body, status) {
    return (body && body.error && body.error.message) || "request failed (" + status + ")";
  }

  var COLOURS = ["#2a6fdb", "#d9480f", "#2b8a3e"];

  // NAMES share one chart (same unit), e.g. latency p50 and p95. A series may have gaps (steps
  // without requests): the x axis is the union of every series' timestamps.
  function drawSeries(box, title, names, series, span) {
    var wrap = document.createElement("div");
    wrap.className = "chart";
    box.appendChild(wrap);
    var first = series[names[0]];
    title = title.replace(/_/g, " ") + " (" + first.unit + ")";
    if (first.unavailable) {
      message(wrap, title + ": unavailable, " + first.unavailable);
      return;
    }
    if (!names.some(function (n) { return series[n].values.length; })) {
      message(wrap, title + ": no data yet");
      return;
    }
    var stamps = {};
    names.forEach(function (n) { series[n].values.forEach(function (p) { stamps[p[0]] = true; }); });
    var xs = Object.keys(stamps).map(Number).sort(function (a, b) { return a - b; });
    var data = [xs].concat(names.map(function (n) {
      var at = {};
      series[n].values.forEach(function (p) { at[p[0]] = p[1]; });
      return xs.map(function (x) { return x in at ? at[x] : null; });
    }));
    new uPlot({
      title: title,
      width: Math.min(560, box.clientWidth || 560),
      height: 180,
      series: [{}].concat(names.map(function (n, i) {
        return { label: n.replace(/_/g, " "), stroke: COLOURS[i % COLOURS.length], width: 1.5 };
      })),
      axes: [{}, { size: 60 }],
      // The whole requested range, so a series with a single point does not span years.
      scales: { x: { time: true, range: function () { return span; } } },
    }, data, wrap);
  }

  // data-combine="latency:latency_p50,latency_p95;...": chart title -> the series drawn together.
  function groups(box, names) {
    var combined = {}, placed = {};
    (box.dataset.combine || "").split(";").filter(Boolean).forEach(function (spec) {
      var parts = spec.split(":");
      combined[parts[0]] = parts[1].split(",").filter(function (n) { return names.indexOf(n) >= 0; });
    });
    var out = [];
    names.forEach(function (name) {
      if (placed[name]) { return; }
      var title = Object.keys(combined).filter(function (t) { return combined[t].indexOf(name) >= 0; })[0];
      var members = title ? combined[title] : [name];
      members.forEach(function (n) { placed[n] = true; });
      out.push({ title: title || name, names: members });
    });
    return out;
  }

  function loadCharts(box) {
    var select = box.parentNode.querySelector("[data-chom-range]");
    var url = box.dataset.url + "?range=" + encodeURIComponent(select ? select.value : "1h");
    message(box, "loading…");
    fetch(url, { credentials: "same-origin" }).then(function (r) {
      return r.json().then(function (body) { return { ok: r.ok, status: r.status, body: body }; });
    }).then(function (res) {
      if (!res.ok) { message(box, errorText(res.body, res.status)); return; }
      box.textContent = "";
      var span = [Date.parse(res.body.start) / 1000, Date.parse(res.body.end) / 1000];
      groups(box, Object.keys(res.body.series)).forEach(function (g) {
        drawSeries(box, g.title, g.names, res.body.series, span);
      });
    }).catch(function (err) { message(box, "metrics unavailable: " + err); });
  }

  function loadLogs(form) {
    var out = form.parentNode.querySelector("[data-chom-log-lines]");
    var params = new URLSearchParams(new FormData(form));
    out.textContent = "loading…";
    fetch(form.dataset.url + "?" + params.toString(), { credentials: "same-origin" }).then(function (r) {
      return r.json().then(function (body) { return { ok: r.ok, status: r.status, body: body }; });
    }).then(function (res) {
      if (!res.ok) { out.textContent = errorText(res.body, res.status); return; }
      out.textContent = res.body.lines.length ? res.body.lines.map(function (l) {
        return l.timestamp + " [" + l.log + "] " + l.line;
      }).join("\n") : "no log lines in this period";
    }).catch(function (err) { out.textContent = "logs unavailable: " + err; });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-chom-charts]").forEach(function (box) {
      var select = box.parentNode.querySelector("[data-chom-range]");
      if (select) { select.addEventListener("change", function () { loadCharts(box); }); }
      loadCharts(box);
    });
    document.querySelectorAll("[data-chom-logs]").forEach(function (form) {
      form.addEventListener("submit", function (e) { e.preventDefault(); loadLogs(form); });
      loadLogs(form);
    });
  });
})();
