// The tsercom live dashboard: plain browser JavaScript, no build step.
//
// It reads the demo's events from the `events` Server-Sent Events stream of
// the server that served it (examples/_dashboard.ts), keeps one table row,
// one uPlot chart of the IMU's six axes over the last 10 s and one depth
// image per data source, and redraws at most every REDRAW_MS milliseconds.
// Everything it loads comes from that server.
//
// For tests it exposes `window.__dashboard` (see the end of this file).

(function () {
  "use strict";

  /** How much IMU history each chart shows: samples with t ≥ newest − WINDOW_MS. */
  const WINDOW_MS = 10_000;
  /** The least time between two redraws (at most ~10 redraws a second). */
  const REDRAW_MS = 100;
  /** How many error messages the page keeps. */
  const KEPT_ERRORS = 20;
  /** Chart height in CSS pixels. */
  const CHART_HEIGHT = 220;

  const AXES = [
    { label: "ax", scale: "acc", stroke: "#d62728" },
    { label: "ay", scale: "acc", stroke: "#2ca02c" },
    { label: "az", scale: "acc", stroke: "#1f77b4" },
    { label: "gx", scale: "gyro", stroke: "#ff7f0e", dash: [5, 3] },
    { label: "gy", scale: "gyro", stroke: "#9467bd", dash: [5, 3] },
    { label: "gz", scale: "gyro", stroke: "#17becf", dash: [5, 3] },
  ];

  const SANDBOX_LABELS = {
    netns: "netns (private network namespace)",
    lan: "lan (real network)",
  };

  const tbody = document.querySelector("#peers tbody");
  const noPeers = document.getElementById("no-peers");
  const streams = document.getElementById("streams");
  const errorsSection = document.getElementById("errors");
  const errorsList = errorsSection.querySelector("ol");
  const statusEl = document.getElementById("status");

  /** Every data source seen, by caller id. */
  const peers = new Map();
  /** Peers with something to redraw at the next flush. */
  const dirty = new Set();
  let flushTimer = 0;
  let lastFlush = -Infinity;
  let startedAt = null;
  let stopped = false;
  let received = 0;
  let ignored = 0;

  // ---------------------------------------------------------------------
  // Formatting
  // ---------------------------------------------------------------------

  function pad(n, width) {
    return String(n).padStart(width, "0");
  }

  /** Local date and time, `YYYY-MM-DD HH:MM:SS`. */
  function formatDateTime(ms) {
    const d = new Date(ms);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1, 2)}-${pad(d.getDate(), 2)} ` +
      `${pad(d.getHours(), 2)}:${pad(d.getMinutes(), 2)}:${pad(d.getSeconds(), 2)}`;
  }

  /** Local time of day with milliseconds. */
  function formatClock(ms) {
    const d = new Date(ms);
    return `${pad(d.getHours(), 2)}:${pad(d.getMinutes(), 2)}:${pad(d.getSeconds(), 2)}.` +
      pad(d.getMilliseconds(), 3);
  }

  function isNumber(x) {
    return typeof x === "number" && Number.isFinite(x);
  }

  function fixed(x, digits) {
    return isNumber(x) ? x.toFixed(digits) : "—";
  }

  function rate(x) {
    if (!isNumber(x)) return "—";
    return Number.isInteger(x) ? String(x) : x.toFixed(1);
  }

  function count(x) {
    return isNumber(x) ? String(x) : "—";
  }

  // ---------------------------------------------------------------------
  // Peers: one table row and one card (chart + depth image) each
  // ---------------------------------------------------------------------

  const COLUMNS = [
    ["name", (_s, p) => p.name],
    ["state", (s) => s?.state ?? "—"],
    ["address", (s) => s && s.address !== undefined ? `${s.address}:${s.port}` : "—"],
    ["offset", (s) => s && s.offsetMicros !== null ? fixed(s.offsetMicros / 1000, 2) : "—"],
    ["imuHz", (s) => rate(s?.imuHz)],
    ["depthHz", (s) => rate(s?.depthHz)],
    ["latency", (s) => s && s.latencyMs !== null ? fixed(s.latencyMs, 1) : "—"],
    ["updates", (s) => count(s?.updates)],
    ["resyncs", (s) => count(s?.resyncs)],
  ];
  const NUMERIC = new Set(["offset", "imuHz", "depthHz", "latency", "updates", "resyncs"]);

  function element(tag, className, attributes) {
    const el = document.createElement(tag);
    if (className) el.className = className;
    for (const [name, value] of Object.entries(attributes ?? {})) el.setAttribute(name, value);
    return el;
  }

  function getPeer(id, name) {
    let peer = peers.get(id);
    if (peer) return peer;

    const row = element("tr", "", { "data-peer": id });
    for (const [col] of COLUMNS) {
      row.append(element("td", NUMERIC.has(col) ? "num" : "", { "data-col": col }));
    }

    const card = element("article", "stream", { "data-peer": id });
    const title = element("h2");
    const titleName = element("span", "name");
    const titleState = element("span", "state");
    title.append(titleName, " ", titleState);
    const body = element("div", "stream-body");
    const chartEl = element("div", "imu-chart", { "data-peer": id });
    const figure = element("figure", "depth");
    const canvas = element("canvas", "depth-frame", { "data-peer": id, width: "64", height: "64" });
    const caption = element("figcaption", "", {});
    caption.textContent = "waiting for depth…";
    figure.append(canvas, caption);
    body.append(chartEl, figure);
    card.append(title, body);

    peer = {
      id,
      name: name ?? id,
      summary: null,
      at: -Infinity,
      row,
      card,
      titleName,
      titleState,
      chartEl,
      chart: null,
      t: [],
      v: AXES.map(() => []),
      outOfOrder: 0,
      canvas,
      ctx: canvas.getContext("2d"),
      caption,
      depthPending: null,
      depthDrawn: 0,
      depthInvalid: 0,
      rowDirty: true,
      chartDirty: false,
      resizes: null,
    };
    peers.set(id, peer);
    place(peer);
    peer.resizes = new ResizeObserver(() => resizeChart(peer));
    peer.resizes.observe(chartEl);
    return peer;
  }

  /** Puts a peer's row and card in name order. */
  function place(peer) {
    const sorted = [...peers.values()].sort((a, b) =>
      a.name < b.name ? -1 : a.name > b.name ? 1 : a.id < b.id ? -1 : 1
    );
    const next = sorted[sorted.indexOf(peer) + 1];
    tbody.insertBefore(peer.row, next ? next.row : null);
    streams.insertBefore(peer.card, next ? next.card : null);
  }

  /** Shows a peer's state as of `at` (a change older than what is shown is skipped). */
  function updatePeer(summary, at) {
    if (!summary || typeof summary.id !== "string") {
      ignored++;
      return;
    }
    const peer = getPeer(summary.id, summary.name);
    if (isNumber(at)) {
      if (at < peer.at) return;
      peer.at = at;
    }
    peer.summary = summary;
    if (typeof summary.name === "string" && summary.name !== peer.name) {
      peer.name = summary.name;
      place(peer);
    }
    peer.rowDirty = true;
    dirty.add(peer);
  }

  function renderRow(peer) {
    const s = peer.summary;
    COLUMNS.forEach(([_col, value], i) => {
      const td = peer.row.cells[i];
      const text = value(s, peer);
      if (td.textContent !== text) td.textContent = text;
    });
    const state = s?.state ?? "unknown";
    peer.row.dataset.state = state;
    peer.row.cells[1].className = `state state-${state}`;
    peer.titleName.textContent = peer.name;
    peer.titleState.textContent = s?.state ?? "";
    peer.titleState.className = `state state-${state}`;
    peer.rowDirty = false;
  }

  // ---------------------------------------------------------------------
  // IMU charts
  // ---------------------------------------------------------------------

  function onImu(event) {
    if (typeof event.peer !== "string" || !Array.isArray(event.t) || !Array.isArray(event.v)) {
      ignored++;
      return;
    }
    const peer = getPeer(event.peer);
    const { t, v } = peer;
    for (let i = 0; i < event.t.length; i++) {
      const time = event.t[i];
      const axes = event.v[i];
      if (!isNumber(time) || !Array.isArray(axes)) continue;
      // uPlot needs increasing x; a sample older than the newest is dropped.
      if (t.length > 0 && !(time > t[t.length - 1])) {
        peer.outOfOrder++;
        continue;
      }
      t.push(time);
      for (let k = 0; k < AXES.length; k++) v[k].push(isNumber(axes[k]) ? axes[k] : null);
    }
    peer.chartDirty = true;
    dirty.add(peer);
  }

  /** Drops the samples older than the window, counted back from the newest. */
  function trim(peer) {
    const { t } = peer;
    if (t.length === 0) return;
    const oldest = t[t.length - 1] - WINDOW_MS;
    let lo = 0;
    let hi = t.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (t[mid] < oldest) lo = mid + 1;
      else hi = mid;
    }
    if (lo > 0) {
      t.splice(0, lo);
      for (const axis of peer.v) axis.splice(0, lo);
    }
  }

  function chartWidth(peer) {
    return Math.max(240, Math.floor(peer.chartEl.clientWidth || 600));
  }

  function chartOptions(peer) {
    return {
      width: chartWidth(peer),
      height: CHART_HEIGHT,
      ms: 1, // x values are milliseconds since the epoch
      cursor: { drag: { x: false, y: false } },
      scales: {
        x: { time: true, range: (_u, _min, max) => [max - WINDOW_MS, max] },
        acc: { auto: true },
        gyro: { auto: true },
      },
      series: [
        { label: "time", value: (_u, x) => x === null ? "—" : formatClock(x) },
        ...AXES.map((axis) => ({
          label: axis.label,
          scale: axis.scale,
          stroke: axis.stroke,
          width: 1.25,
          dash: axis.dash,
          points: { show: false },
          value: (_u, y) => y === null ? "—" : y.toFixed(2),
        })),
      ],
      axes: [
        {},
        { scale: "acc", label: "acceleration (m/s²)", size: 56 },
        { scale: "gyro", side: 1, label: "angular rate (rad/s)", size: 56, grid: { show: false } },
      ],
    };
  }

  function renderChart(peer) {
    trim(peer);
    peer.chartDirty = false;
    if (peer.t.length === 0) return;
    const data = [peer.t.slice(), ...peer.v.map((axis) => axis.slice())];
    if (peer.chart === null) {
      peer.chartEl.textContent = "";
      peer.chart = new uPlot(chartOptions(peer), data, peer.chartEl);
    } else {
      peer.chart.setData(data);
    }
  }

  function resizeChart(peer) {
    if (peer.chart === null) return;
    const width = chartWidth(peer);
    if (width !== peer.chart.width) peer.chart.setSize({ width, height: CHART_HEIGHT });
  }

  // ---------------------------------------------------------------------
  // Depth frames
  // ---------------------------------------------------------------------

  /** Viridis: dark purple (far) to yellow (near), 256 entries of [r, g, b]. */
  const COLORMAP = (function () {
    const stops = [
      [0x44, 0x01, 0x54],
      [0x48, 0x28, 0x78],
      [0x3e, 0x49, 0x89],
      [0x31, 0x68, 0x8e],
      [0x26, 0x82, 0x8e],
      [0x1f, 0x9e, 0x89],
      [0x35, 0xb7, 0x79],
      [0x6e, 0xce, 0x58],
      [0xb5, 0xde, 0x2b],
      [0xfd, 0xe7, 0x25],
    ];
    const lut = [];
    for (let i = 0; i < 256; i++) {
      const x = (i / 255) * (stops.length - 1);
      const j = Math.min(Math.floor(x), stops.length - 2);
      const f = x - j;
      lut.push(stops[j].map((c, k) => Math.round(c + (stops[j + 1][k] - c) * f)));
    }
    return lut;
  })();

  function onDepth(event) {
    if (typeof event.peer !== "string") {
      ignored++;
      return;
    }
    const peer = getPeer(event.peer);
    peer.depthPending = event; // only the newest frame is drawn
    dirty.add(peer);
  }

  function renderDepth(peer) {
    const frame = peer.depthPending;
    peer.depthPending = null;
    const { width, height, mm } = frame;
    if (
      !Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0 ||
      !Array.isArray(mm) || mm.length !== width * height
    ) {
      peer.depthInvalid++;
      return;
    }
    const { canvas, ctx } = peer;
    if (canvas.width !== width) canvas.width = width;
    if (canvas.height !== height) canvas.height = height;
    let lo = Infinity;
    let hi = -Infinity;
    for (const d of mm) {
      if (d > 0) {
        if (d < lo) lo = d;
        if (d > hi) hi = d;
      }
    }
    const span = hi > lo ? hi - lo : 1;
    const image = ctx.createImageData(width, height);
    const px = image.data;
    for (let i = 0; i < mm.length; i++) {
      const d = mm[i];
      const o = i * 4;
      px[o + 3] = 255;
      if (!(d > 0)) continue; // no reading: black
      const [r, g, b] = COLORMAP[Math.round((1 - (d - lo) / span) * 255)];
      px[o] = r;
      px[o + 1] = g;
      px[o + 2] = b;
    }
    ctx.putImageData(image, 0, 0);
    peer.depthDrawn++;
    peer.caption.textContent = lo <= hi
      ? `${width}×${height} · ${(lo / 1000).toFixed(2)}–${(hi / 1000).toFixed(2)} m · ` +
        formatClock(frame.t)
      : `${width}×${height} · no readings`;
  }

  // ---------------------------------------------------------------------
  // Run state, errors
  // ---------------------------------------------------------------------

  function setStatus(text, state) {
    statusEl.textContent = text;
    statusEl.className = `status-${state}`;
  }

  function reset() {
    for (const peer of peers.values()) {
      peer.resizes.disconnect();
      peer.chart?.destroy();
      peer.row.remove();
      peer.card.remove();
    }
    peers.clear();
    dirty.clear();
    errorsList.textContent = "";
    errorsSection.hidden = true;
  }

  function onStarted(event) {
    if (startedAt !== null && event.at !== startedAt) reset(); // the runtimes restarted
    startedAt = event.at;
    stopped = false;
    document.getElementById("sandbox").textContent = SANDBOX_LABELS[event.sandbox] ??
      String(event.sandbox);
    document.getElementById("sources").textContent = count(event.sources);
    document.getElementById("started").textContent = isNumber(event.at)
      ? formatDateTime(event.at)
      : "—";
    setStatus("live", "live");
  }

  function onStopped(event) {
    stopped = true;
    setStatus(`stopped at ${formatDateTime(event.at)}`, "stopped");
  }

  function onError(event) {
    const item = element("li");
    const time = element("time");
    time.textContent = isNumber(event.at) ? formatClock(event.at) : "";
    item.append(time, " ", String(event.message));
    errorsList.append(item);
    while (errorsList.children.length > KEPT_ERRORS) errorsList.firstElementChild.remove();
    errorsSection.hidden = false;
  }

  // ---------------------------------------------------------------------
  // Redraws, at most every REDRAW_MS
  // ---------------------------------------------------------------------

  function flush() {
    flushTimer = 0;
    lastFlush = performance.now();
    for (const peer of dirty) {
      if (peer.rowDirty) renderRow(peer);
      if (peer.chartDirty) renderChart(peer);
      if (peer.depthPending) renderDepth(peer);
    }
    dirty.clear();
    noPeers.hidden = peers.size > 0;
  }

  function scheduleFlush() {
    if (flushTimer !== 0) return;
    flushTimer = setTimeout(flush, Math.max(0, lastFlush + REDRAW_MS - performance.now()));
  }

  function handle(event) {
    switch (event?.type) {
      case "started":
        onStarted(event);
        break;
      case "summary":
        if (Array.isArray(event.peers)) {
          for (const summary of event.peers) updatePeer(summary, event.at);
        } else ignored++;
        break;
      case "peer":
        updatePeer(event.peer, event.at);
        break;
      case "imu":
        onImu(event);
        break;
      case "depth":
        onDepth(event);
        break;
      case "error":
        onError(event);
        break;
      case "stopped":
        onStopped(event);
        break;
      default:
        ignored++;
        return;
    }
    scheduleFlush();
  }

  // ---------------------------------------------------------------------
  // The event stream
  // ---------------------------------------------------------------------

  const source = new EventSource("events");
  source.onopen = () => {
    if (!stopped) setStatus("live", "live");
  };
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) setStatus("disconnected", "offline");
    else if (!stopped) setStatus("reconnecting…", "offline");
  };
  source.onmessage = (message) => {
    received++;
    let event;
    try {
      event = JSON.parse(message.data);
    } catch {
      ignored++;
      return;
    }
    try {
      handle(event);
    } catch (error) {
      ignored++;
      console.error("tsercom dashboard: cannot show event", event?.type, error);
    }
  };

  // ---------------------------------------------------------------------
  // For tests (and the curious, from the console)
  // ---------------------------------------------------------------------

  globalThis.__dashboard = {
    /** Peer names as listed in the table, in table order. */
    peers: () => [...tbody.rows].map((row) => row.cells[0].textContent),
    /** The table as shown: one object per row, keyed by column. */
    rows: () =>
      [...tbody.rows].map((row) => {
        const cells = { id: row.dataset.peer };
        COLUMNS.forEach(([col], i) => {
          cells[col] = row.cells[i].textContent;
        });
        return cells;
      }),
    /** IMU samples currently plotted in a peer's chart. */
    points: (peerId) => peers.get(peerId)?.chart?.data[0].length ?? 0,
    /** Depth frames drawn so far for a peer. */
    depthFrames: (peerId) => peers.get(peerId)?.depthDrawn ?? 0,
    /** Events received from the server so far. */
    received: () => received,
    /** Events that could not be shown (malformed or unknown). */
    ignored: () => ignored,
  };
})();
