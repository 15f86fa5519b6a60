/* RadStream dashboard: draws what /api/dashboard returns, and asks again every few seconds.
 *
 * No figure is computed here: every number comes from a named query's rows, as the server
 * sent them; this script only reshapes rows into series (a pivot for the failure codes) and
 * draws them. What it drew is kept in window.radstreamDashboard.plotted, by chart, for the
 * browser tests to compare with the queries.
 */
(function () {
  "use strict";

  var REFRESH_MS = parseInt(document.body.getAttribute("data-refresh-ms"), 10) || 5000;
  var COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
    "#7f7f7f", "#bcbd22", "#17becf"];
  var state = { updates: 0, data: null, plotted: {}, charts: {}, errors: 0, window: null };
  window.radstreamDashboard = state;

  var rangeSelect = document.getElementById("range");
  var variantSelect = document.getElementById("variant");
  var statusLine = document.getElementById("status");
  var timer = null;

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function svg(tag, attrs, text) {
    var node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function column(figure, name) {
    var i = figure.columns.indexOf(name);
    return figure.rows.map(function (row) { return row[i]; });
  }

  /* The figure with only the rows whose column `name` holds `value` (a query returns one
   * row per outcome or per variant; a chart shows some of them). */
  function only(figure, name, value) {
    var i = figure.columns.indexOf(name);
    return { title: figure.title, query: figure.query, columns: figure.columns,
      rows: figure.rows.filter(function (row) { return row[i] === value; }) };
  }

  function without(figure, name, value) {
    var i = figure.columns.indexOf(name);
    return { title: figure.title, query: figure.query, columns: figure.columns,
      rows: figure.rows.filter(function (row) { return row[i] !== value; }) };
  }

  function lookup(figure, keyName, valueName) {
    var k = figure.columns.indexOf(keyName), v = figure.columns.indexOf(valueName), found = {};
    figure.rows.forEach(function (row) { found[String(row[k])] = row[v]; });
    return found;
  }

  function bucketLabel(seconds) {
    if (seconds % 86400 === 0) { return seconds === 86400 ? "day" : (seconds / 86400) + " days"; }
    if (seconds % 3600 === 0) { return seconds === 3600 ? "hour" : (seconds / 3600) + " hours"; }
    if (seconds % 60 === 0) { return seconds === 60 ? "minute" : (seconds / 60) + " minutes"; }
    return seconds + " s";
  }

  function fmtAge(seconds) {
    if (seconds === null || seconds === undefined) { return "none pending"; }
    if (seconds < 120) { return seconds.toFixed(1) + " s"; }
    if (seconds < 7200) { return (seconds / 60).toFixed(1) + " min"; }
    return (seconds / 3600).toFixed(1) + " h";
  }

  function epochSeconds(iso) { return Date.parse(iso) / 1000; }

  /* ---------------------------------------------------------------- formatting */

  function fmt(name, value) {
    if (value === null || value === undefined) { return "no data"; }
    if (name === "p95_ms") { return (value / 1000).toFixed(2) + " s"; }
    if (name === "throughput_per_min") { return value.toFixed(1) + " /min"; }
    if (name === "cost_per_image_usd") { return "$" + value.toPrecision(3); }
    if (name === "success_rate") { return (100 * value).toFixed(2) + " %"; }
    return String(value);
  }

  function fmtLimit(tile) {
    var op = { "<": "under", "<=": "at most", ">": "over", ">=": "at least" }[tile.op];
    return "objective: " + op + " " + fmt(tile.name, tile.limit);
  }

  /* ---------------------------------------------------------------- tiles */

  function drawTiles(tiles) {
    var box = document.getElementById("objectives");
    box.textContent = "";
    tiles.forEach(function (tile) {
      var burns = Object.keys(tile.windows).map(function (w) { return tile.windows[w].burn; });
      var known = burns.filter(function (b) { return b !== null; });
      var verdict = known.length === 0 ? "" : (known.some(function (b) { return b > 1; }) ? "miss" : "ok");
      var card = el("article", { "class": "tile " + verdict, "data-objective": tile.name });
      card.appendChild(el("h2", {}, tile.label));
      card.appendChild(el("div", { "class": "limit" }, fmtLimit(tile)));
      var table = el("table", {});
      var head = el("tr", {});
      ["window", "value", "burn", "executions"].forEach(function (h) { head.appendChild(el("th", {}, h)); });
      table.appendChild(head);
      Object.keys(tile.windows).forEach(function (w) {
        var fig = tile.windows[w];
        var row = el("tr", { "data-window": w });
        row.appendChild(el("td", {}, "last " + w));
        row.appendChild(el("td", { "class": "value" }, fmt(tile.name, fig.value)));
        var burnText = fig.burn === null ? "–" : fig.burn.toFixed(2) + "×";
        row.appendChild(el("td", { "class": "burn " + (fig.burn === null ? "" : (fig.burn > 1 ? "miss" : "ok")) }, burnText));
        row.appendChild(el("td", { "class": "executions" }, String(fig.executions)));
        table.appendChild(row);
      });
      card.appendChild(table);
      card.appendChild(el("div", { "class": "source" }, "query " + tile.query));
      box.appendChild(card);
    });
  }

  /* ---------------------------------------------------------------- charts */

  function frame(key, figure) {
    var box = document.getElementById("chart-" + key);
    box.textContent = "";
    var caption = el("figcaption", {}, figure.title + " ");
    caption.appendChild(el("span", { "class": "source" },
      figure.source ? figure.source : "query " + figure.query));
    box.appendChild(caption);
    var body = el("div", { "class": "body" });
    box.appendChild(body);
    return body;
  }

  function chartWidth(key) {
    var box = document.getElementById("chart-" + key);
    return Math.max(300, (box.clientWidth || 600) - 20);
  }

  /* A time chart (uPlot): x in epoch seconds, one series per label. Keeps the chart when
   * only the data changed, so a refresh does not flicker. */
  function timeChart(key, figure, xs, series, opts) {
    // The title is part of the key: a new bucket size retitles the chart, so it is redrawn.
    var labels = [figure.title].concat(series.map(function (s) { return s.label; })).join("\u0000");
    var data = [xs].concat(series.map(function (s) { return s.values; }));
    state.plotted[key] = { x: xs, series: {} };
    series.forEach(function (s) { state.plotted[key].series[s.label] = s.values; });
    var old = state.charts[key];
    if (xs.length === 0) {
      if (old) { old.chart.destroy(); delete state.charts[key]; }
      frame(key, figure).appendChild(el("div", { "class": "empty" }, "No data in this range."));
      return;
    }
    if (old && old.labels === labels && document.getElementById("chart-" + key).contains(old.chart.root)) {
      old.chart.setData(data);
      return;
    }
    if (old) { old.chart.destroy(); }
    var body = frame(key, figure);
    var bars = opts && opts.bars ? uPlot.paths.bars({ size: [0.6, 40] }) : null;
    var pad = opts && opts.pad ? opts.pad : 60;
    var windowed = Boolean(opts && opts.windowed);
    var chart = new uPlot({
      width: chartWidth(key),
      height: 220,
      scales: {
        // The selected window, when it has a start; else the data, padded (one point
        // alone would otherwise span years).
        // From the data, not from min/max: uPlot widens a lone point's range by years.
        x: { time: true, range: function (u) {
          var xs = u.data[0], lo = xs[0], hi = xs[xs.length - 1];
          var w = state.window;  // read at each redraw: the window moves with every refresh
          if (windowed && w && w[0] > 0) { return [Math.min(w[0], lo), Math.max(w[1], hi)]; }
          return [lo - pad, hi + pad];
        } },
        y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; } },
      },
      axes: [{}, { label: opts && opts.yLabel ? opts.yLabel : "", size: 60,
        // Three significant digits: ticks of $0.0005 stay apart, counts stay whole.
        values: function (u, splits) { return splits.map(function (v) { return String(Number(v.toPrecision(3))); }); } }],
      series: [{}].concat(series.map(function (s, i) {
        var line = { label: s.label, stroke: s.color || COLORS[i % COLORS.length], width: 2,
          points: { show: true, size: 5 } };
        if (s.dash) { line.dash = [6, 4]; line.points = { show: false }; }
        if (bars && !s.dash) { line.paths = bars; line.fill = (s.color || COLORS[i % COLORS.length]) + "55"; }
        return line;
      })),
    }, data, body);
    state.charts[key] = { chart: chart, labels: labels };
  }

  /* Grouped bars (SVG) over categories: stages, batch sizes, variants. */
  function barChart(key, figure, categories, series, yLabel) {
    var body = frame(key, figure);
    state.plotted[key] = { x: categories, series: {} };
    series.forEach(function (s) { state.plotted[key].series[s.label] = s.values; });
    if (categories.length === 0) {
      body.appendChild(el("div", { "class": "empty" }, "No data in this range."));
      return;
    }
    var width = chartWidth(key), height = 220, left = 60, bottom = 28, top = 16;
    var max = 0;
    series.forEach(function (s) { s.values.forEach(function (v) { if (v !== null && v > max) { max = v; } }); });
    max = max > 0 ? max : 1;
    var plot = svg("svg", { "class": "bars", width: width, height: height, role: "img",
      "aria-label": figure.title });
    var slot = (width - left) / categories.length;
    var barW = Math.max(4, (slot * 0.8) / series.length);
    plot.appendChild(svg("line", { "class": "axis", x1: left, y1: height - bottom, x2: width, y2: height - bottom }));
    plot.appendChild(svg("text", { x: 2, y: 12 }, yLabel + " (max " + max.toPrecision(3) + ")"));
    categories.forEach(function (cat, c) {
      var x0 = left + c * slot + slot * 0.1;
      series.forEach(function (s, i) {
        var v = s.values[c];
        if (v === null) { return; }
        var h = (height - bottom - top) * v / max;
        var rect = svg("rect", { x: x0 + i * barW, y: height - bottom - h, width: barW - 1, height: h,
          fill: COLORS[i % COLORS.length], "data-series": s.label, "data-category": String(cat),
          "data-value": String(v) });
        rect.appendChild(svg("title", {}, s.label + " " + cat + ": " + v));
        plot.appendChild(rect);
      });
      plot.appendChild(svg("text", { x: x0, y: height - bottom + 14 }, String(cat)));
    });
    body.appendChild(plot);
    var legend = el("div", { "class": "legend" });
    series.forEach(function (s, i) {
      var item = el("span", {});
      var swatch = el("span", { "class": "swatch" });
      swatch.style.background = COLORS[i % COLORS.length];
      item.appendChild(swatch);
      item.appendChild(document.createTextNode(s.label));
      legend.appendChild(item);
    });
    body.appendChild(legend);
  }

  function titled(figure, title) {
    return { title: title, query: figure.query, columns: figure.columns, rows: figure.rows };
  }

  function draw(data) {
    var f = data.figures;
    state.window = data.window_s;
    var per = " per " + bucketLabel(data.bucket_s);
    var p95 = null;
    data.objectives.forEach(function (t) { if (t.name === "p95_ms") { p95 = t.limit; } });
    var cost = null;
    data.objectives.forEach(function (t) { if (t.name === "cost_per_image_usd") { cost = t.limit; } });

    // Latency: the successful executions' rows (the query gives failed ones too).
    var lat = titled(only(f.latency, "outcome", "succeeded"), "End-to-end latency of successful executions" + per + " (ms)");
    var latX = column(lat, "bucket").map(epochSeconds);
    var latSeries = ["p50_ms", "p95_ms", "p99_ms"].map(function (c) { return { label: c, values: column(lat, c) }; });
    if (p95 !== null) { latSeries.push({ label: "objective p95", values: latX.map(function () { return p95; }), color: "#999999", dash: true }); }
    timeChart("latency", lat, latX, latSeries, { yLabel: "ms", windowed: true });

    var tp = titled(f.throughput, "Executions finished" + per);
    timeChart("throughput", tp, column(tp, "bucket").map(epochSeconds), [
      { label: "succeeded", values: column(tp, "succeeded"), color: "#2ca02c" },
      { label: "failed", values: column(tp, "failed"), color: "#d62728" },
    ], { bars: true, yLabel: "executions", windowed: true });

    // Failures: one series per error code, over the buckets any code failed in.
    var fl = titled(f.failures, "Failures by code" + per), buckets = [], codes = [], cells = {};
    fl.rows.forEach(function (row) {
      var m = epochSeconds(row[fl.columns.indexOf("bucket")]);
      var code = String(row[fl.columns.indexOf("error_code")]);
      if (buckets.indexOf(m) < 0) { buckets.push(m); }
      if (codes.indexOf(code) < 0) { codes.push(code); }
      cells[m + "|" + code] = row[fl.columns.indexOf("executions")];
    });
    buckets.sort(function (a, b) { return a - b; });
    codes.sort();
    timeChart("failures", fl, buckets, codes.map(function (code) {
      return { label: code, values: buckets.map(function (m) { var v = cells[m + "|" + code]; return v === undefined ? null : v; }) };
    }), { yLabel: "executions", windowed: true });

    var st = f.stages;
    barChart("stages", st, column(st, "stage"), ["p50_ms", "p95_ms", "p99_ms"].map(function (c) {
      return { label: c, values: column(st, c) };
    }), "ms");

    var co = f.cost, coSeries = [{ label: "cost_per_image_usd", values: column(co, "cost_per_image_usd") }];
    var coX = column(co, "bucket").map(epochSeconds);
    if (cost !== null) { coSeries.push({ label: "objective", values: coX.map(function () { return cost; }), color: "#999999", dash: true }); }
    timeChart("cost", co, coX, coSeries, { bars: true, yLabel: "USD", pad: 86400 });

    var ba = f.batches;
    barChart("batches", ba, column(ba, "batch_size"), [{ label: "calls", values: column(ba, "calls") }], "calls");

    // A/B: executions without a variant are no arm of any experiment.
    var va = titled(without(only(f.variant_latency, "outcome", "succeeded"), "variant", null),
      "A/B variants side by side: end-to-end latency of successful executions (ms)");
    var vs = without(f.variant_success, "variant", null);
    var vc = without(f.variant_cost, "variant", null);
    barChart("variants", va, column(va, "variant"), ["p50_ms", "p95_ms"].map(function (c) {
      return { label: c, values: column(va, c) };
    }), "ms");
    var finished = lookup(vs, "variant", "finished"), success = lookup(vs, "variant", "success_rate");
    var perImage = lookup(vc, "variant", "cost_per_image_usd");
    var rates = el("p", { "class": "variant-rates" });
    rates.textContent = column(vs, "variant").map(function (v) {
      return v + ": " + finished[v] + " executions, success " + fmt("success_rate", success[v]) +
        ", cost " + fmt("cost_per_image_usd", perImage[v] === undefined ? null : perImage[v]);
    }).join(" · ");
    var sources = el("p", { "class": "source" }, "queries " + f.variant_success.query + ", " + f.variant_cost.query);
    document.getElementById("chart-variants").appendChild(rates);
    document.getElementById("chart-variants").appendChild(sources);

    // The variant filter offers the variants the lake has in this range.
    var chosen = variantSelect.value;
    var names = column(vs, "variant");
    if (chosen && names.indexOf(chosen) < 0) { names.push(chosen); }
    variantSelect.textContent = "";
    variantSelect.appendChild(el("option", { value: "" }, "all variants"));
    names.forEach(function (name) { variantSelect.appendChild(el("option", { value: name }, name)); });
    variantSelect.value = chosen;

    drawEngine(data.engine);
  }

  /* The engine's own counts (not a query of the lake): by state, and the queue over time. */
  function drawEngine(engine) {
    var box = document.getElementById("chart-engine");
    var queueBox = document.getElementById("chart-queue");
    if (!engine) {
      state.plotted.engine = null;
      var none = { title: "Executions by state", source: "engine" };
      frame("engine", none).appendChild(el("div", { "class": "empty" }, "No engine database here: no engine ran in this data directory."));
      queueBox.hidden = true;
      return;
    }
    var states = Object.keys(engine.counts);
    var figure = { title: "Executions by state", source: engine.source };
    barChart("engine", figure, states, [{ label: "executions", values: states.map(function (s) { return engine.counts[s]; }) }], "executions");
    var facts = [];
    if (engine.queue_depth !== null) { facts.push("queue depth " + engine.queue_depth); }
    if (engine.queue_depth !== null) { facts.push("oldest pending " + fmtAge(engine.oldest_pending_age_s)); }
    if (engine.unrouted_events !== null) { facts.push(engine.unrouted_events + " uploads not yet routed"); }
    box.appendChild(el("p", { "class": "engine-facts" }, facts.join(" · ")));
    box.appendChild(el("p", { "class": "source" }, engine.note));
    state.plotted.engine.queue_depth = engine.queue_depth;
    state.plotted.engine.oldest_pending_age_s = engine.oldest_pending_age_s;
    if (engine.history.length === 0) { queueBox.hidden = true; return; }
    queueBox.hidden = false;
    var hist = { title: "Queue depth since the dashboard started", source: engine.source };
    timeChart("queue", hist, engine.history.map(function (h) { return h[0]; }), [
      { label: "pending", values: engine.history.map(function (h) { return h[1]; }), color: "#ff7f0e" },
      { label: "running", values: engine.history.map(function (h) { return h[2]; }), color: "#1f77b4" },
    ], { yLabel: "executions" });
  }

  /* ---------------------------------------------------------------- refresh */

  function schedule() {
    if (timer !== null) { clearTimeout(timer); }
    timer = setTimeout(refresh, REFRESH_MS);
  }

  function refresh() {
    var url = "/api/dashboard?range=" + encodeURIComponent(rangeSelect.value) +
      "&variant=" + encodeURIComponent(variantSelect.value);
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        return response.json().then(function (body) {
          if (!response.ok) { throw new Error(body.error || ("HTTP " + response.status)); }
          return body;
        });
      })
      .then(function (data) {
        state.data = data;
        drawTiles(data.objectives);
        draw(data);
        state.updates += 1;
        var n = column(data.figures.latency, "n").reduce(function (sum, v) { return sum + v; }, 0);
        statusLine.className = "";
        statusLine.textContent = "Updated " + new Date(data.generated_at).toLocaleTimeString() +
          " · " + n + " executions finished in range · refreshes every " + (REFRESH_MS / 1000) + " s";
      })
      .catch(function (err) {
        // Shown on the page, not thrown: the next refresh may well succeed.
        state.errors += 1;
        statusLine.className = "error";
        statusLine.textContent = "Refresh failed: " + err.message + " (retrying)";
      })
      .then(schedule);
  }

  rangeSelect.addEventListener("change", refresh);
  variantSelect.addEventListener("change", refresh);
  window.addEventListener("resize", function () {
    Object.keys(state.charts).forEach(function (key) {
      state.charts[key].chart.setSize({ width: chartWidth(key), height: 220 });
    });
  });
  refresh();
}());
