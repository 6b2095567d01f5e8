/* memscope HTML report: charts (uPlot), zoom sync, process toggles, sortable tables.
 * Data comes from the JSON block #memscope-data (see memscope/report/html_data.py).
 * Text from the recording is only ever set with textContent, never as markup. */
(function () {
  'use strict';
  const t0 = performance.now();
  const D = JSON.parse(document.getElementById('memscope-data').textContent);
  const G = D.grid;
  const N = 2 * G.buckets;
  const offset = G.t0 - D.started_at;
  const X = new Float64Array(N);
  for (let k = 0; k < N; k++) X[k] = offset + (k >> 1) * G.width + (k & 1) * G.width / 2;
  const XS = Array.from(X);

  /** Delta-encoded KiB (nulls kept) placed at slot `o` of a full-length array of bytes. */
  function decode(enc, o) {
    const out = new Array(N).fill(null);
    let acc = 0;
    for (let i = 0; i < enc.length; i++) {
      const d = enc[i];
      if (d === null) continue;
      acc += d;
      out[o + i] = acc * 1024;
    }
    return out;
  }

  const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  function fmtBytes(v) {
    if (v === null || v === undefined || isNaN(v)) return '-';
    let u = 0;
    let x = Math.abs(v);
    while (x >= 1024 && u < UNITS.length - 1) { x /= 1024; u++; }
    return (v < 0 ? '-' : '') + (u === 0 ? x.toFixed(0) : x.toFixed(1)) + ' ' + UNITS[u];
  }
  // COW figures exist only at scans: hold each scan's value until the next one (a step, not a
  // diagonal through times nothing was measured), with a marker on every scan.
  const SCAN_STEPS = () => ({ paths: uPlot.paths.stepped({ align: 1 }), points: { show: true, size: 5 } });
  const fmtTime = (v) => (v === null || v === undefined ? '-' : v.toFixed(2) + ' s');
  const axisBytes = (u, vals) => vals.map(fmtBytes);

  const ROLE_COLOR = { root: '#d62728', master: '#d62728', worker: '#1f77b4',
    descendant: '#9467bd', wrapper: '#aaaaaa' };
  const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#9467bd', '#8c564b', '#e377c2',
    '#7f7f7f', '#bcbd22', '#17becf', '#393b79', '#637939', '#8c6d31', '#843c39', '#7b4173'];

  const procs = D.processes_meta; // [{id, pid, role, label}] in tree order
  const charts = [];
  let syncing = false;
  let zoom = null; // [min, max] or null

  function setZoom(range, from) {
    if (syncing) return;
    syncing = true;
    zoom = range;
    for (const c of charts) {
      if (c === from) continue;
      if (range) c.setScale('x', { min: range[0], max: range[1] });
      else c.setScale('x', { min: XS[0], max: XS[N - 1] });
    }
    syncing = false;
  }

  function base(width, height, series, extra) {
    return Object.assign({
      width: width,
      height: height,
      series: [{ label: 'time', value: (u, v) => fmtTime(v) }].concat(series),
      scales: { x: { time: false } },
      axes: [
        { values: (u, vals, ax, space, incr) => {
          const dec = Math.min(3, Math.max(0, -Math.floor(Math.log10(incr || 1) + 1e-9)));
          return vals.map((v) => v.toFixed(dec) + 's');
        } },
        { values: axisBytes, size: 82 },
      ],
      cursor: { drag: { x: true, y: false, setScale: true },
        dataIdx: (u, si, i) => (si === 0 ? i : nearest(u.data[si], i)) },
      hooks: {
        setScale: [(u, key) => {
          if (key !== 'x' || syncing) return;
          const min = u.scales.x.min;
          const max = u.scales.x.max;
          const full = min <= XS[0] && max >= XS[N - 1];
          setZoom(full ? null : [min, max], u);
        }],
      },
    }, extra || {});
  }

  // Slots without a sample are null (a column with one sample fills one slot of two, and
  // rollups are rationed), so hover snaps each series to its nearest sample.
  const SNAP = Math.max(64, N / 20);
  function nearest(arr, i) {
    if (i === null || i === undefined || arr[i] !== null) return i;
    for (let d = 1; d <= SNAP; d++) {
      if (i - d >= 0 && arr[i - d] !== null) return i - d;
      if (i + d < arr.length && arr[i + d] !== null) return i + d;
    }
    return i;
  }

  function widthOf(el) { return Math.max(300, el.clientWidth || 800); }

  function applyZoom(u) {
    if (zoom) u.setScale('x', { min: zoom[0], max: zoom[1] });
  }

  // -- tree totals ---------------------------------------------------------------------
  function drawTotals() {
    const el = document.getElementById('totals');
    if (!D.totals) { el.textContent = 'No samples were recorded.'; return; }
    const s = D.totals.s;
    const defs = [['total_rss', 'ΣRSS (naive)', '#d62728', [6, 4]],
      ['total_pss', 'ΣPSS (true footprint)', '#1f77b4', null],
      ['total_uss', 'ΣUSS (private)', '#2ca02c', null]];
    const data = [XS];
    const series = [];
    for (const [key, label, color, dash] of defs) {
      if (!s[key]) continue;
      data.push(decode(s[key], D.totals.o));
      series.push({ label: label, stroke: color, width: 2, dash: dash || undefined,
        spanGaps: true, value: (u, v) => fmtBytes(v) });
    }
    const u = new uPlot(base(widthOf(el), 260, series,
      { cursor: { drag: { x: true, y: false, setScale: true }, sync: { key: 'memscope' },
        dataIdx: (u, si, i) => (si === 0 ? i : nearest(u.data[si], i)) } }),
      data, el);
    charts.push(u);
  }

  // -- overview: one line per process --------------------------------------------------
  const overviewIndex = {}; // process id -> series index
  const overviewColors = []; // colour of each overview series (index 0: time)
  const overviewExtended = {}; // series index -> slot added to carry the last scan to the end
  let overview = null;
  // Copied bytes: one colour per process (the palette, then golden-angle hues) and a legend.
  const colorFor = (i) => (i < PALETTE.length ? PALETTE[i]
    : 'hsl(' + ((i * 137.508) % 360).toFixed(1) + ', 65%, 42%)');
  const slotOf = (rel) => Math.max(0, Math.min(N - 1, Math.floor((rel - offset) / G.width * 2)));
  function carryToEnd(arr, end) {
    // A copied value holds until the next scan: draw it to the process's end (its exit, or
    // the end of the recording). Returns the added slot, or -1.
    let last = -1;
    for (let k = arr.length - 1; k >= 0; k--) if (arr[k] !== null) { last = k; break; }
    const k = slotOf(end);
    if (last < 0 || k <= last) return -1;
    arr[k] = arr[last];
    return k;
  }
  function drawOverview() {
    const el = document.getElementById('overview');
    const readout = document.getElementById('readout');
    const data = [XS];
    const series = [];
    overviewColors.push(null);
    // One metric for every line: copied bytes when any process has a COW timeline, else USS.
    const hasCopied = (b) => b && b.cow && b.cow.s.copied;
    const copiedMode = procs.some((p) => hasCopied(D.processes[p.id]));
    for (const p of procs) {
      const block = D.processes[p.id];
      if (!block || !(copiedMode ? hasCopied(block) : block.s.uss)) continue;
      const enc = copiedMode ? block.cow.s.copied : block.s.uss;
      const o = copiedMode ? block.cow.o : block.o;
      const si = series.length + 1;
      overviewIndex[p.id] = si;
      const arr = decode(enc, o);
      const color = copiedMode ? colorFor(si - 1) : (ROLE_COLOR[p.role] || '#555');
      overviewColors.push(color);
      const s = { label: 'pid ' + p.pid + (p.name && p.name !== p.role ? ' · ' + p.name : ''),
        stroke: color, width: copiedMode ? 1.75 : 1.25, spanGaps: true,
        value: (u, v) => fmtBytes(v) };
      if (copiedMode) {
        const k = carryToEnd(arr, p.end);
        if (k >= 0) overviewExtended[si] = k;
        Object.assign(s, SCAN_STEPS());
        // a filled marker at every scan, none at the carried slot k (no scan there)
        s.points.fill = color;
        s.points.filter = (u, i) => {
          const idxs = [];
          u.data[i].forEach((v, j) => { if (v !== null && j !== overviewExtended[i]) idxs.push(j); });
          return idxs;
        };
        s.pid = p.pid;
      }
      data.push(arr);
      series.push(s);
    }
    if (!series.length) { el.textContent = 'No full samples (USS) were recorded.'; return; }
    const opts = base(widthOf(el), 300, series, {
      legend: { show: copiedMode, live: true },
      cursor: { drag: { x: true, y: false, setScale: true }, sync: { key: 'memscope' },
        focus: { prox: 16 }, dataIdx: (u, si, i) => (si === 0 ? i : nearest(u.data[si], i)) },
      focus: { alpha: 0.25 },
    });
    opts.hooks.setCursor = [(u) => {
      const i = u.cursor.idx;
      if (i === null || i === undefined) { readout.textContent = ''; return; }
      const at = (si) => u.data[si][nearest(u.data[si], i)];
      let best = null;
      for (let si = 1; si < u.series.length; si++) {
        if (!u.series[si].show) continue;
        const v = at(si);
        if (v !== null && v !== undefined && (best === null || v > best[1])) best = [si, v];
      }
      const focused = u.series.findIndex((s, si) => si > 0 && s._focus);
      const pick = focused > 0 && at(focused) !== null ? [focused, at(focused)] : best;
      readout.textContent = 't = ' + fmtTime(u.data[0][i]) +
        (pick ? ' · ' + u.series[pick[0]].label + ': ' + fmtBytes(pick[1]) : '');
    }];
    opts.hooks.setSeries = [(u, si) => {
      if (si === null || !u.series[si]) return;
      const i = u.cursor.idx;
      const v = i === null || i === undefined ? null : u.data[si][nearest(u.data[si], i)];
      readout.textContent = u.series[si].label + (v !== null ? ': ' + fmtBytes(v) : '');
    }];
    if (copiedMode) {
      opts.hooks.draw = [(u) => {
        // The pid at the end of each line (uPlot draws the scan markers: points.filter).
        const ctx = u.ctx;
        const r = 2.5 * devicePixelRatio;
        ctx.save();
        ctx.font = (10 * devicePixelRatio) + 'px sans-serif';
        ctx.textBaseline = 'bottom';
        const placed = [];
        for (let si = 1; si < u.series.length; si++) {
          if (!u.series[si].show) continue;
          const d = u.data[si];
          ctx.fillStyle = overviewColors[si];
          let lx = null;
          let ly = null;
          for (let k = 0; k < d.length; k++) {
            if (d[k] === null) continue;
            const x = u.valToPos(u.data[0][k], 'x', true);
            const y = u.valToPos(d[k], 'y', true);
            if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
            lx = x;
            ly = y;
          }
          if (lx !== null) {
            const text = 'pid ' + u.series[si].pid;
            const w = ctx.measureText(text).width;
            const x = Math.min(lx - w, u.bbox.left + u.bbox.width - w);
            let y = ly - r;
            const h = 11 * devicePixelRatio; // labels at the same height stack upwards
            while (placed.some(([px, py, pw]) => Math.abs(py - y) < h && x < px + pw && px < x + w)) {
              y -= h;
            }
            placed.push([x, y, w]);
            ctx.fillText(text, x, y);
          }
        }
        ctx.restore();
      }];
    }
    overview = new uPlot(opts, data, el);
    charts.push(overview);
  }

  // -- per-process small multiples, created when scrolled into view ----------------------
  const cards = {};
  const EAGER_CARDS = 24; // more than this: draw each card as it scrolls into view
  function stacked(defs, block, scans) {
    // defs bottom-first; returns uPlot series top-first, filled to zero, with raw values.
    const raw = [];
    const sums = [];
    let acc = null;
    for (const [key] of defs) {
      const r = decode(block.s[key], block.o);
      raw.push(r);
      acc = acc === null ? r.slice()
        : acc.map((a, i) => (a === null ? r[i] : (r[i] === null ? a : a + r[i])));
      sums.push(acc);
    }
    const data = [];
    const series = [];
    for (let j = defs.length - 1; j >= 0; j--) {
      const [, label, color, fill] = defs[j];
      const r = raw[j];
      data.push(sums[j]);
      series.push(Object.assign({ label: label, stroke: color, fill: fill, width: 1, spanGaps: true,
        value: (u, v, si, idx) => (idx === null ? '-' : fmtBytes(r[idx])) }, scans ? SCAN_STEPS() : {}));
    }
    return [data, series];
  }

  function drawCard(p) {
    const card = cards[p.id];
    if (!card || card.chart) return;
    const block = D.processes[p.id];
    const holder = card.querySelector('.chart');
    let data = [];
    let series = [];
    if (block.cow) {
      const defs = [['copied', 'copied', '#d62728', '#f4a6a6'],
        ['new_private', 'new private', '#ff7f0e', '#ffd0a1'],
        ['shared', 'still shared', '#2ca02c', '#b9e4b4'], ['swapped', 'swap', '#7f7f7f', '#d0d0d0']]
        .filter(([k]) => block.cow.s[k]);
      [data, series] = stacked(defs, block.cow, true);
    } else {
      const defs = [['uss', 'USS (private)', '#1f77b4', '#a9cce8'],
        ['shared', 'shared', '#2ca02c', '#b9e4b4'], ['swap', 'swap', '#7f7f7f', '#d0d0d0']].filter(([k]) => block.s[k]);
      [data, series] = stacked(defs, block);
    }
    for (const [key, label, color, dash] of [['pss', 'PSS', '#9467bd', null], ['rss', 'RSS', '#333333', [4, 3]]]) {
      if (!block.s[key]) continue;
      data.push(decode(block.s[key], block.o));
      series.push({ label: label, stroke: color, width: 1.5, dash: dash || undefined,
        spanGaps: true, value: (u, v) => fmtBytes(v) });
    }
    const u = new uPlot(base(widthOf(holder), 170, series), [XS].concat(data), holder);
    applyZoom(u);
    card.chart = u;
    charts.push(u);
  }

  function buildCards() {
    const host = document.getElementById('cards');
    const observer = 'IntersectionObserver' in window ? new IntersectionObserver((entries) => {
      for (const e of entries) {
        if (e.isIntersecting) {
          observer.unobserve(e.target);
          drawCard(procs.find((p) => String(p.id) === e.target.dataset.id));
        }
      }
    }, { rootMargin: '400px' }) : null;
    for (const p of procs) {
      if (!D.processes[p.id]) continue;
      const card = document.createElement('div');
      card.className = 'pcard';
      card.dataset.id = String(p.id);
      const title = document.createElement('div');
      title.className = 'ptitle';
      title.textContent = 'pid ' + p.pid + ' · ' + p.role + ' · ' + p.label;
      const chart = document.createElement('div');
      chart.className = 'chart';
      card.appendChild(title);
      card.appendChild(chart);
      host.appendChild(card);
      cards[p.id] = card;
      if (observer && procs.length > EAGER_CARDS) observer.observe(card); else drawCard(p);
    }
  }

  // -- toggles -------------------------------------------------------------------------
  function setShown(id, show) {
    const card = cards[id];
    if (card) card.style.display = show ? '' : 'none';
    const si = overviewIndex[id];
    if (overview && si) overview.setSeries(si, { show: show });
    const box = document.querySelector('input.toggle[data-id="' + id + '"]');
    if (box) box.checked = show;
  }
  function bindToggles() {
    for (const box of document.querySelectorAll('input.toggle')) {
      box.addEventListener('change', () => setShown(box.dataset.id, box.checked));
    }
    for (const btn of document.querySelectorAll('button[data-show]')) {
      btn.addEventListener('click', () => {
        const which = btn.dataset.show;
        for (const p of procs) setShown(String(p.id), which === 'all' || p.role === which
          || (which === 'root' && p.role === 'master'));  // the master below wrappers
      });
    }
    document.getElementById('reset-zoom').addEventListener('click', () => setZoom(null, null));
  }

  // -- sortable tables -----------------------------------------------------------------
  function bindSorting() {
    for (const tbl of document.querySelectorAll('table.sortable')) {
      const ths = tbl.querySelectorAll('thead th');
      ths.forEach((th, col) => {
        if (th.dataset.kind === 'toggle') return;
        th.tabIndex = 0;
        const sort = () => {
          const desc = th.dataset.dir !== 'desc';
          ths.forEach((h) => { delete h.dataset.dir; });
          th.dataset.dir = desc ? 'desc' : 'asc';
          const num = th.dataset.kind === 'num';
          const body = tbl.tBodies[0];
          const rows = Array.from(body.rows);
          const key = (r) => {
            const c = r.cells[col];
            const v = c && c.dataset.v !== undefined ? c.dataset.v : (c ? c.textContent : '');
            return num ? parseFloat(v) : v;
          };
          rows.sort((a, b) => {
            const x = key(a);
            const y = key(b);
            const r = num ? (isNaN(x) ? -Infinity : x) - (isNaN(y) ? -Infinity : y)
              : String(x).localeCompare(String(y), undefined, { numeric: true });
            return desc ? -r : r;
          });
          for (const r of rows) body.appendChild(r);
        };
        th.addEventListener('click', sort);
        th.addEventListener('keydown', (e) => { if (e.key === 'Enter') sort(); });
      });
    }
  }

  drawTotals();
  drawOverview();
  buildCards();
  bindToggles();
  bindSorting();
  window.addEventListener('resize', () => {
    for (const c of charts) c.setSize({ width: widthOf(c.root.parentNode), height: c.height });
  });
  requestAnimationFrame(() => {
    window.memscope = { charts: charts, cards: cards, overview: overview,
      overviewColors: overviewColors, overviewExtended: overviewExtended,
      drawAll: () => { for (const p of procs) if (D.processes[p.id]) drawCard(p); },
      renderMs: performance.now() - t0, zoom: () => zoom, setZoom: (r) => setZoom(r, null) };
    document.body.dataset.ready = '1';
  });
})();
