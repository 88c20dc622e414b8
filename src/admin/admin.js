// The admin page's script (served by plugins/admin.ts): plain browser JavaScript, no library, no build step.
// Every 2 s it fetches /debug (JSON) and /metrics (Prometheus text) once each, never more often and never two at
// once: one page costs 60 requests a minute of the address's http.rate_limit budget (300 a minute by default).
// Rates are differences of two successive counter readings. URLs are relative to the page, so the page also works
// behind a proxy that serves the hub under a path prefix.

const POLL_MS = 2000;
const REQUEST_TIMEOUT_MS = 1900;
/** After a refusal (403) the page keeps asking, slowly. */
const REFUSED_RETRY_MS = 15_000;
const CHART_MS = 5 * 60_000;
const WS_MESSAGES_SHOWN = 20;
const WS_MESSAGE_CHARS = 600;
const TRY_OUTPUT_CHARS = 20_000;

/** Close codes the hub sends (src/hub/close-codes.ts, docs/protocol.md). */
const CLOSE_CODES = {
  1001: 'going away (shutdown)',
  1011: 'internal error',
  4001: 'token expired',
  4008: 'slow consumer',
  4029: 'rate limited',
  terminated: 'no answer to pings',
};

/** The few series the page reads from /metrics; every other line is skipped unparsed. */
const WANTED = new Set([
  'dashboard_sent_messages_total',
  'dashboard_sent_bytes_total',
  'dashboard_broadcasts_total',
  'dashboard_broadcast_duration_seconds_bucket',
  'dashboard_broadcast_duration_seconds_sum',
  'dashboard_broadcast_duration_seconds_count',
  'dashboard_slow_consumer_skips_total',
  'dashboard_disconnects_total',
  'nodejs_eventloop_lag_p99_seconds',
  'process_resident_memory_bytes',
  'process_cpu_seconds_total',
]);

const $ = (id) => document.getElementById(id);

/** An element with attributes and children (strings become text: nothing from the hub is parsed as HTML). */
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== undefined && value !== null && value !== false) node.setAttribute(name, String(value));
  }
  node.append(...children.map((child) => (child instanceof Node ? child : String(child ?? ''))));
  return node;
}

function setText(id, text, value) {
  const node = $(id);
  node.textContent = text;
  if (value !== undefined) node.dataset.value = String(value);
}

// ---- formatting ----

function fmtNumber(n, digits = 0) {
  if (n === undefined || n === null || Number.isNaN(n)) return '–';
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

function fmtRate(n) {
  if (n === undefined) return '–';
  return fmtNumber(n, n < 10 ? 1 : 0);
}

function fmtBytes(n) {
  if (n === undefined || n === null) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${fmtNumber(value, unit === 0 ? 0 : 1)} ${units[unit]}`;
}

function fmtSeconds(seconds) {
  if (seconds === undefined || seconds === null || !Number.isFinite(seconds)) return '–';
  if (seconds < 0.001) return `${fmtNumber(seconds * 1e6, 0)} µs`;
  if (seconds < 1) return `${fmtNumber(seconds * 1000, seconds < 0.01 ? 2 : 1)} ms`;
  return `${fmtNumber(seconds, 2)} s`;
}

function fmtDuration(seconds) {
  if (seconds === undefined || seconds === null) return '–';
  const s = Math.max(0, Math.floor(seconds));
  const days = Math.floor(s / 86_400);
  const hours = Math.floor((s % 86_400) / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  const pad = (n) => String(n).padStart(2, '0');
  if (days > 0) return `${days}d ${hours}h`;
  if (hours > 0) return `${hours}h ${pad(minutes)}m`;
  if (minutes > 0) return `${minutes}m ${pad(s % 60)}s`;
  return `${s}s`;
}

/** `12s ago` for an ISO time (the hub's clock against this browser's: close enough for minutes). */
function fmtAgo(iso) {
  if (!iso) return '–';
  const at = Date.parse(iso);
  if (Number.isNaN(at)) return String(iso);
  return `${fmtDuration((Date.now() - at) / 1000)} ago`;
}

function fmtCounts(counts) {
  const entries = Object.entries(counts ?? {}).filter(([, n]) => n > 0);
  return entries.length === 0 ? '–' : entries.map(([name, n]) => `${name} ${n}`).join(', ');
}

// ---- /metrics ----

/** The wanted samples of a Prometheus text exposition: name → [{labels, value}]. */
function parseMetrics(text) {
  const samples = new Map();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!match || !WANTED.has(match[1])) continue;
    const labels = {};
    for (const label of (match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      labels[label[1]] = label[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
    }
    // Number('+Inf') is Infinity; an unparsable value is NaN and counts as missing.
    const value = Number(match[3]);
    if (!samples.has(match[1])) samples.set(match[1], []);
    samples.get(match[1]).push({ labels, value });
  }
  return samples;
}

/** The sum of a metric's samples whose labels include `where`; undefined when it has none. */
function metricSum(metrics, name, where = {}) {
  let sum;
  for (const { labels, value } of metrics?.get(name) ?? []) {
    if (Number.isNaN(value)) continue;
    if (Object.entries(where).every(([key, wanted]) => labels[key] === wanted)) sum = (sum ?? 0) + value;
  }
  return sum;
}

/** A metric summed by one label: label value → sum. */
function metricBy(metrics, name, label) {
  const sums = {};
  for (const { labels, value } of metrics?.get(name) ?? []) {
    const key = labels[label] ?? '';
    sums[key] = (sums[key] ?? 0) + value;
  }
  return sums;
}

/** Per second between two readings of a counter; undefined without both, or after a reset (a restart). */
function perSecond(now, before, seconds) {
  if (now === undefined || before === undefined || seconds <= 0 || now < before) return undefined;
  return (now - before) / seconds;
}

/** Mean and p99 (as a bucket bound, text) of a histogram's observations between two readings, for one client type. */
function histogramWindow(now, before, type) {
  const buckets = (metrics) =>
    (metrics?.get('dashboard_broadcast_duration_seconds_bucket') ?? [])
      .filter((sample) => sample.labels.client_type === type)
      .map((sample) => ({ le: Number(sample.labels.le), count: sample.value }))
      .sort((a, b) => a.le - b.le);
  const where = { client_type: type };
  const count =
    (metricSum(now, 'dashboard_broadcast_duration_seconds_count', where) ?? 0) -
    (metricSum(before, 'dashboard_broadcast_duration_seconds_count', where) ?? 0);
  const sum =
    (metricSum(now, 'dashboard_broadcast_duration_seconds_sum', where) ?? 0) -
    (metricSum(before, 'dashboard_broadcast_duration_seconds_sum', where) ?? 0);
  if (!before || count <= 0) return { mean: undefined, p99: undefined };
  const previous = new Map(buckets(before).map((b) => [b.le, b.count]));
  let p99;
  let bound = 0;
  for (const bucket of buckets(now)) {
    if (bucket.count - (previous.get(bucket.le) ?? 0) >= 0.99 * count) {
      p99 = Number.isFinite(bucket.le) ? `≤ ${fmtSeconds(bucket.le)}` : `> ${fmtSeconds(bound)}`;
      break;
    }
    bound = bucket.le;
  }
  return { mean: sum / count, p99 };
}

// ---- the chart ----

const CHARTS = [
  { key: 'clients', title: 'clients', format: (v) => fmtNumber(v) },
  { key: 'deliveries', title: 'deliveries/s', format: (v) => fmtRate(v) },
  { key: 'loop', title: 'event-loop delay p99', format: (v) => fmtSeconds(v) },
];
const CHART_WIDTH = 300;
const CHART_HEIGHT = 80;
const SVG = 'http://www.w3.org/2000/svg';
const chartPoints = Object.fromEntries(CHARTS.map((chart) => [chart.key, []]));

function svg(tag, attributes = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  return node;
}

function buildCharts() {
  $('chart-minutes').textContent = String(CHART_MS / 60_000);
  for (const chart of CHARTS) {
    const box = svg('svg', {
      viewBox: `0 0 ${CHART_WIDTH} ${CHART_HEIGHT}`,
      preserveAspectRatio: 'none',
      role: 'img',
      'aria-label': chart.title,
    });
    for (const y of [0.5, 1]) {
      box.append(
        svg('line', {
          class: 'grid-line',
          x1: 0,
          x2: CHART_WIDTH,
          y1: y * CHART_HEIGHT - 0.5,
          y2: y * CHART_HEIGHT - 0.5,
          'vector-effect': 'non-scaling-stroke',
        }),
      );
    }
    box.append(svg('path', { class: 'area', d: '' }), svg('path', { class: 'series', d: '' }));
    const head = el(
      'div',
      { class: 'chart-head' },
      el('span', {}, chart.title),
      el(
        'span',
        {},
        'now ',
        el('strong', { 'data-now': '' }, '–'),
        ' · max ',
        el('span', { 'data-max': '' }, '–'),
      ),
    );
    $('charts').append(el('div', { class: 'chart', 'data-chart': chart.key }, head, box));
  }
}

function record(key, value, at) {
  const points = chartPoints[key];
  if (value !== undefined && Number.isFinite(value)) points.push({ at, value });
  while (points.length > 0 && points[0].at < at - CHART_MS) points.shift();
}

function drawCharts(now) {
  for (const chart of CHARTS) {
    const points = chartPoints[chart.key];
    const box = document.querySelector(`[data-chart="${chart.key}"]`);
    const max = Math.max(...points.map((p) => p.value), 0);
    const top = max > 0 ? max * 1.15 : 1;
    const x = (at) => ((at - (now - CHART_MS)) / CHART_MS) * CHART_WIDTH;
    const y = (value) => CHART_HEIGHT - (value / top) * CHART_HEIGHT;
    let line = '';
    let area = '';
    let runStart;
    let previous;
    for (const point of points) {
      // A gap (the tab was hidden, the hub did not answer) breaks the line instead of bridging it.
      const gap = previous === undefined || point.at - previous.at > POLL_MS * 3;
      const px = x(point.at).toFixed(1);
      const py = y(point.value).toFixed(1);
      if (gap) {
        if (runStart !== undefined) area += `L${x(previous.at).toFixed(1)},${CHART_HEIGHT}Z`;
        line += `M${px},${py}`;
        area += `M${px},${CHART_HEIGHT}L${px},${py}`;
        runStart = point;
      } else {
        line += `L${px},${py}`;
        area += `L${px},${py}`;
      }
      previous = point;
    }
    if (previous !== undefined) area += `L${x(previous.at).toFixed(1)},${CHART_HEIGHT}Z`;
    box.querySelector('path.series').setAttribute('d', line);
    box.querySelector('path.area').setAttribute('d', area);
    const last = points[points.length - 1];
    box.querySelector('[data-now]').textContent = last ? chart.format(last.value) : '–';
    box.querySelector('[data-max]').textContent = points.length > 0 ? chart.format(max) : '–';
  }
}

// ---- health ----

/** ok, warn, down or off, for a status and a breaker state. */
function health(status, breaker) {
  if (status === 'off') return 'off';
  if (status === 'down' || status === 'stalled' || breaker === 'open') return 'down';
  if ((status === 'up' || status === 'ok') && (breaker === undefined || breaker === 'closed')) return 'ok';
  return 'warn';
}

function sourceRows(debug) {
  const rows = [];
  const redis = debug.redis ?? {};
  const redisStatus = redis.status === 'up' && !redis.loaded ? 'loading' : redis.status;
  rows.push({
    name: 'redis',
    status: redisStatus,
    since: redis.since,
    lastSuccess: redis.status === 'up' ? 'now' : undefined,
    lastError: redis.lastError,
    health: health(redisStatus),
  });
  const nats = debug.nats ?? {};
  rows.push({
    name: 'nats',
    status: nats.status,
    since: nats.since,
    lastSuccess: nats.status === 'up' ? 'now' : undefined,
    lastError: nats.lastError,
    health: health(nats.status),
  });
  const historyInfo = debug.history ?? {};
  rows.push({
    name: 'history',
    status: historyInfo.status,
    breaker: historyInfo.enabled ? historyInfo.breaker : undefined,
    since: historyInfo.since,
    lastSuccess: historyInfo.lastFlush,
    lastError: historyInfo.lastError,
    health: health(historyInfo.status, historyInfo.enabled ? historyInfo.breaker : undefined),
  });
  const leader = debug.leader;
  if (leader) {
    // Which replica of the fleet polls the backends (docs/replicas.md): this one, another, or none known.
    const status = leader.is_leader
      ? `leading (${leader.self})`
      : leader.isolated
        ? 'isolated: no reply from Redis; polling for its own clients'
        : leader.holder
          ? `following ${leader.holder}`
          : 'no leader';
    rows.push({
      name: 'leader',
      status: `${status} · takeovers ${leader.takeovers}`,
      lastSuccess:
        leader.lease_age == null ? undefined : new Date(Date.now() - leader.lease_age).toISOString(),
      health: leader.is_leader || leader.holder ? 'ok' : 'warn',
    });
  }
  for (const [name, source] of Object.entries(debug.sources ?? {})) {
    rows.push({
      name,
      status: source.status,
      breaker: source.breaker,
      since: source.stale_since ? `stale since ${fmtAgo(source.stale_since)}` : undefined,
      lastSuccess: source.last_success,
      lastError: source.last_error,
      health: health(source.status, source.breaker),
    });
  }
  return rows;
}

function renderSources(debug) {
  const body = $('sources-table').tBodies[0];
  body.replaceChildren(
    ...sourceRows(debug).map((row) => {
      // `since` of a status that changes (up, down, connecting); an `off` connection never changes.
      const since =
        row.since && row.status !== 'off' && !String(row.since).startsWith('stale')
          ? ` · since ${fmtAgo(row.since)}`
          : '';
      const stale = row.since && String(row.since).startsWith('stale') ? ` · ${row.since}` : '';
      const lastSuccess = row.lastSuccess === 'now' ? 'now' : row.lastSuccess ? fmtAgo(row.lastSuccess) : '–';
      return el(
        'tr',
        { 'data-source': row.name, 'data-health': row.health, class: `health-${row.health}` },
        el('td', {}, row.name),
        el('td', { class: 'status' }, `${row.status ?? '–'}${since}${stale}`),
        el('td', {}, row.breaker ?? '–'),
        el('td', { title: row.lastSuccess === 'now' ? undefined : row.lastSuccess }, lastSuccess),
        el('td', { class: 'error' }, row.lastError ?? '–'),
      );
    }),
  );
}

// ---- one refresh ----

/** The previous reading: rates are differences against it. */
let previous;

function render(debug, metrics, at) {
  const restarted = previous !== undefined && previous.debug.epoch !== debug.epoch;
  const before = restarted ? undefined : previous;
  const seconds = before ? (at - before.at) / 1000 : 0;
  const rate = (name, where) =>
    perSecond(metricSum(metrics, name, where), metricSum(before?.metrics, name, where), seconds);

  setText('uptime', fmtDuration(debug.uptime), debug.uptime);
  setText('epoch', debug.epoch, debug.epoch);
  setText('sequence', String(debug.sequence), debug.sequence);
  setText('last-update', fmtAgo(debug.last_update));
  setText('clients', fmtNumber(debug.clients), debug.clients);
  setText('users', fmtNumber(debug.users));
  setText('groups', fmtNumber(debug.groups));
  setText('state-bytes', fmtBytes(debug.state_bytes));
  setText(
    'state-budget',
    debug.state_budget ? `${fmtNumber((100 * debug.state_bytes) / debug.state_budget, 1)}%` : '–',
  );
  setText('journal', fmtBytes(debug.journal_bytes));

  const deliveries = rate('dashboard_sent_messages_total');
  setText('messages-rate', fmtRate(deliveries));
  setText('bytes-rate', fmtBytes(rate('dashboard_sent_bytes_total')));
  setText('rss', fmtBytes(metricSum(metrics, 'process_resident_memory_bytes')));
  const cpu = rate('process_cpu_seconds_total');
  setText('cpu', cpu === undefined ? '–' : `${fmtNumber(cpu * 100, 0)}%`);
  const loop = metricSum(metrics, 'nodejs_eventloop_lag_p99_seconds');
  setText('loop-delay', fmtSeconds(loop));

  // Clients by type, protocol and format.
  const types = Object.keys(debug.clients_by_type ?? {});
  $('clients-table').tBodies[0].replaceChildren(
    ...types.map((type) =>
      el(
        'tr',
        { 'data-type': type },
        el('td', {}, type),
        el('td', { class: 'num open' }, fmtNumber(debug.clients_by_type[type])),
        el('td', { class: 'protocols' }, fmtCounts(debug.clients_by_protocol?.[type])),
        el('td', { class: 'formats' }, fmtCounts(debug.clients_by_format?.[type])),
        el('td', { class: 'num' }, fmtRate(rate('dashboard_sent_messages_total', { client_type: type }))),
        el('td', { class: 'num' }, fmtBytes(rate('dashboard_sent_bytes_total', { client_type: type }))),
      ),
    ),
  );

  // Broadcast: per type over the last interval.
  $('broadcast-table').tBodies[0].replaceChildren(
    ...types.map((type) => {
      const duration = histogramWindow(metrics, before?.metrics, type);
      return el(
        'tr',
        { 'data-type': type },
        el('td', {}, type),
        el('td', { class: 'num' }, fmtRate(rate('dashboard_broadcasts_total', { client_type: type }))),
        el('td', { class: 'num' }, fmtSeconds(duration.mean)),
        el('td', { class: 'num' }, duration.p99 ?? '–'),
      );
    }),
  );
  const skips =
    metricSum(metrics, 'dashboard_slow_consumer_skips_total') ?? debug.broadcast?.slowConsumerSkips;
  setText('slow-skips', fmtNumber(skips), skips);
  setText('slow-skips-rate', fmtRate(rate('dashboard_slow_consumer_skips_total')));
  const disconnects = Object.entries(metricBy(metrics, 'dashboard_disconnects_total', 'code')).filter(
    ([, count]) => count > 0,
  );
  $('disconnects-table').tBodies[0].replaceChildren(
    ...(disconnects.length === 0
      ? [el('tr', {}, el('td', { class: 'empty', colspan: 3 }, 'none since the start'))]
      : disconnects.map(([code, count]) =>
          el(
            'tr',
            { 'data-code': code },
            el('td', {}, code),
            el('td', {}, CLOSE_CODES[code] ?? ''),
            el('td', { class: 'num' }, fmtNumber(count)),
          ),
        )),
  );

  renderSources(debug);
  renderIngest(debug, before?.debug, seconds);

  record('clients', debug.clients, Date.now());
  record('deliveries', deliveries, Date.now());
  record('loop', loop, Date.now());
  drawCharts(Date.now());
  previous = { at, debug, metrics };
}

function renderIngest(debug, before, seconds) {
  const ingest = debug.ingest ?? {};
  const rows = [];
  for (const source of Object.keys(ingest.messages ?? {})) {
    const topics = new Set([
      ...Object.keys(ingest.messages?.[source] ?? {}),
      ...Object.keys(ingest.invalid?.[source] ?? {}),
      ...Object.keys(ingest.stale?.[source] ?? {}),
    ]);
    for (const topic of [...topics].sort()) {
      const messages = ingest.messages?.[source]?.[topic] ?? 0;
      const invalid = ingest.invalid?.[source]?.[topic] ?? 0;
      const stale = ingest.stale?.[source]?.[topic] ?? 0;
      const perSec = perSecond(
        messages,
        before?.ingest?.messages?.[source]?.[topic] ?? (before ? 0 : undefined),
        seconds,
      );
      rows.push(
        el(
          'tr',
          { 'data-ingest': `${source}/${topic}` },
          el('td', {}, source),
          el('td', {}, topic),
          el('td', { class: 'num' }, fmtRate(perSec)),
          el('td', { class: 'num' }, fmtNumber(messages)),
          el('td', { class: 'num', 'data-nonzero': invalid > 0 ? '' : undefined }, fmtNumber(invalid)),
          el('td', { class: 'num' }, fmtNumber(stale)),
        ),
      );
    }
  }
  $('ingest-table').tBodies[0].replaceChildren(
    ...(rows.length === 0
      ? [el('tr', {}, el('td', { class: 'empty', colspan: 6 }, 'nothing ingested yet'))]
      : rows),
  );
}

// ---- polling ----

class PollError extends Error {
  constructor(kind, message, retryMs) {
    super(message);
    this.kind = kind;
    this.retryMs = retryMs;
  }
}

async function get(path, kind) {
  let response;
  try {
    response = await fetch(path, {
      cache: 'no-store',
      headers: { accept: kind === 'json' ? 'application/json' : 'text/plain' },
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
  } catch (error) {
    throw new PollError(
      'unreachable',
      `${path}: ${error.name === 'TimeoutError' ? 'no answer' : error.message}`,
    );
  }
  if (response.status === 429) {
    const seconds = Number(response.headers.get('retry-after'));
    throw new PollError(
      'limited',
      `${path}: rate limited`,
      Number.isFinite(seconds) ? seconds * 1000 : 10_000,
    );
  }
  const text = await response.text();
  if (response.status === 403) throw new PollError('refused', `${path}: refused (${text})`, REFUSED_RETRY_MS);
  if (!response.ok) throw new PollError('failed', `${path}: HTTP ${response.status}`);
  return kind === 'json' ? JSON.parse(text) : text;
}

function setPollState(state, text, title) {
  const pill = $('poll-state');
  pill.dataset.health = state;
  pill.textContent = text;
  pill.title = title ?? '';
}

let timer;
let polling = false;

function schedule(delay) {
  clearTimeout(timer);
  timer = setTimeout(poll, Math.max(delay, 100));
}

async function poll() {
  timer = undefined;
  if (document.hidden) {
    setPollState('off', 'paused', 'this tab is hidden: no requests until it is shown');
    return;
  }
  polling = true;
  const started = performance.now();
  let wait = POLL_MS;
  try {
    const [debug, metricsText] = await Promise.all([get('debug', 'json'), get('metrics', 'text')]);
    render(debug, parseMetrics(metricsText), performance.now());
    setPollState('ok', 'live');
    $('refreshed').textContent = new Date().toLocaleTimeString();
  } catch (error) {
    const kind = error instanceof PollError ? error.kind : 'failed';
    const labels = {
      refused: 'refused',
      limited: 'rate limited',
      unreachable: 'unreachable',
      failed: 'failed',
    };
    setPollState(kind === 'limited' ? 'warn' : 'down', labels[kind] ?? 'failed', error.message);
    if (error instanceof PollError && error.retryMs !== undefined) wait = Math.max(wait, error.retryMs);
  } finally {
    polling = false;
  }
  // Start to start: never closer than POLL_MS, whatever the answers took.
  schedule(wait - (performance.now() - started));
}

document.addEventListener('visibilitychange', () => {
  if (!document.hidden && timer === undefined && !polling) poll();
});

// ---- try it ----

function tokenValue() {
  return $('token').value.trim();
}

function showOutput(text) {
  const out = $('try-output');
  out.textContent = text.length > TRY_OUTPUT_CHARS ? `${text.slice(0, TRY_OUTPUT_CHARS)}\n… (cut)` : text;
}

async function tryGet(label, path, withToken) {
  showOutput(`${label} …`);
  const headers = {};
  const token = tokenValue();
  if (withToken && token !== '') headers.authorization = `Bearer ${token}`;
  try {
    const response = await fetch(path, { cache: 'no-store', headers, signal: AbortSignal.timeout(10_000) });
    const text = await response.text();
    let body = text;
    try {
      body = JSON.stringify(JSON.parse(text), null, 2);
    } catch {}
    showOutput(`${label}\n${response.status} ${response.statusText}\n${body}`);
  } catch (error) {
    showOutput(`${label}\nfailed: ${error.message}`);
  }
}

let socket;

function setSocketState(state, text) {
  const pill = $('ws-state');
  pill.dataset.health = state;
  pill.textContent = text;
  $('ws-open').disabled = state === 'ok' || state === 'warn';
  $('ws-close').disabled = !(state === 'ok' || state === 'warn');
}

function openSocket() {
  if (socket) socket.close(1000);
  const url = new URL('ws?type=web', location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  const token = tokenValue();
  const subscriptions = $('ws-topics')
    .value.split(',')
    .map((topic) => topic.trim())
    .filter((topic) => topic !== '');
  const list = $('ws-messages');
  list.replaceChildren();
  let received = 0;
  let opened = false;
  // The token travels as the subprotocol pair `bearer, <token>`: never in the URL.
  const ws = token === '' ? new WebSocket(url) : new WebSocket(url, ['bearer', token]);
  socket = ws;
  setSocketState('warn', 'connecting');
  showOutput(`WebSocket ${url.pathname}${url.search} …`);
  ws.addEventListener('open', () => {
    opened = true;
    setSocketState('ok', 'open');
    showOutput(`WebSocket ${url.pathname}${url.search}: open`);
    if (subscriptions.length > 0) ws.send(JSON.stringify({ action: 'subscribe', subscriptions }));
  });
  ws.addEventListener('message', (event) => {
    received++;
    if (received <= WS_MESSAGES_SHOWN) {
      const text =
        typeof event.data === 'string'
          ? event.data
          : `(binary, ${event.data.size ?? event.data.byteLength} bytes)`;
      list.append(
        el(
          'li',
          {},
          text.length > WS_MESSAGE_CHARS
            ? `${text.slice(0, WS_MESSAGE_CHARS)} … (${text.length} chars)`
            : text,
        ),
      );
    } else {
      showOutput(
        `WebSocket ${url.pathname}${url.search}: open, ${received} messages (the first ${WS_MESSAGES_SHOWN} shown)`,
      );
    }
  });
  ws.addEventListener('close', (event) => {
    if (socket === ws) socket = undefined;
    if (opened) {
      setSocketState('off', `closed ${event.code}`);
      showOutput(
        `WebSocket closed: ${event.code}${event.reason ? ` ${event.reason}` : ''} after ${received} messages`,
      );
    } else {
      setSocketState('down', 'refused');
      showOutput(
        `WebSocket refused (the browser does not say why; the hub's log does): no token or a bad one (401), ` +
          `this page's origin ${location.origin} not in websocket.allowed_origins (403), or a rate limit (429).`,
      );
    }
  });
}

function init() {
  $('interval').textContent = String(POLL_MS / 1000);
  buildCharts();
  $('try-health').addEventListener('click', () => tryGet('GET /health', 'health', false));
  $('try-ready').addEventListener('click', () => tryGet('GET /ready', 'ready', false));
  $('try-state').addEventListener('click', () => {
    const topic = $('topic').value.trim();
    const query = topic === '' ? '' : `?topics=${encodeURIComponent(topic)}`;
    tryGet(`GET /api/v1/state${query}`, `api/v1/state${query}`, true);
  });
  $('ws-open').addEventListener('click', openSocket);
  $('ws-close').addEventListener('click', () => socket?.close(1000));
  poll();
}

init();
