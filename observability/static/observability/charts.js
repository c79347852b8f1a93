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

  function drawSeries(box, name, serie, span) {
    var wrap = document.createElement("div");
    wrap.className = "chart";
    box.appendChild(wrap);
    var title = name.replace(/_/g, " ") + " (" + serie.unit + ")";
    if (serie.unavailable) {
      message(wrap, title + ": unavailable, " + serie.unavailable);
      return;
    }
    if (!serie.values.length) {
      message(wrap, title + ": no data yet");
      return;
    }
    var xs = serie.values.map(function (p) { return p[0]; });
    var ys = serie.values.map(function (p) { return p[1]; });
    new uPlot({
      title: title,
      width: Math.min(560, box.clientWidth || 560),
      height: 180,
      series: [{}, { label: name, stroke: "#2a6fdb", width: 1.5 }],
      axes: [{}, { size: 60 }],
      // The whole requested range, so a series with a single point does not span years.
      scales: { x: { time: true, range: function () { return span; } } },
    }, [xs, ys], wrap);
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
      Object.keys(res.body.series).forEach(function (name) {
        drawSeries(box, name, res.body.series[name], span);
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
