import assert from 'node:assert/strict';
import { after, before, describe, type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import type { Browser, BrowserContext, Page, Request } from 'playwright-core';
import { launchChromium } from '../../scripts/lib/browser.ts';
import type { DashboardClient } from '../../src/client.ts';
import { configFromDocument } from '../../src/config/load.ts';
import { type RunningApp, startApp, waitReady } from '../helpers/app.ts';
import { accountBody, HttpBackend, json } from '../helpers/backends-http.ts';
import { connectClient } from '../helpers/client.ts';
import { freePort, TestRedis } from '../helpers/redis.ts';
import { authOn, signToken } from '../helpers/tokens.ts';

/**
 * The admin page (plugins/admin.ts, src/admin/) in a real browser: headless Chromium (Debian's package) driven by
 * playwright-core, against a hub started in this process with auth on, a private Redis and an account-monitor
 * stand-in to turn red. The hub trusts loopback as a proxy, so a browser context sending X-Forwarded-For plays a
 * visitor from another address.
 */

const viewer = signToken({ userId: 'vera', role: 'viewer' });
const admin = signToken({ userId: 'ada', role: 'admin' });
/** A public address (TEST-NET-3): neither loopback nor in ops.allowed_cidrs. */
const OUTSIDER = '203.0.113.7';
/** An address in ops.allowed_cidrs (TEST-NET-2). */
const OPS_HOST = '198.51.100.9';

let redis: TestRedis;
let publisher: Redis;
let account: HttpBackend;
let running: RunningApp;
let browser: Browser;
const contexts: BrowserContext[] = [];
const clients: DashboardClient[] = [];

/** Waits until `check` holds (checked every 100 ms), or fails naming `what` and the last value seen. */
async function until<T>(what: string, read: () => Promise<T> | T, check: (value: T) => boolean, ms = 10_000) {
  const deadline = Date.now() + ms;
  let value = await read();
  while (!check(value)) {
    if (Date.now() > deadline) assert.fail(`${what}: still ${JSON.stringify(value)} after ${ms}ms`);
    await sleep(100);
    value = await read();
  }
  return value;
}

interface Watched {
  page: Page;
  /** Requests the page made: path (and query), method, headers, when. */
  requests: { url: URL; headers: Record<string, string>; request: Request }[];
  /** URLs of the WebSockets the page opened. */
  sockets: string[];
  /** Console errors and uncaught page errors. */
  errors: string[];
}

/**
 * A page in a fresh context (1280×900), closed when test `t` ends (a page left open keeps polling), recording its
 * requests, sockets, errors and CSP violations.
 */
async function openPage(t: TestContext, headers: Record<string, string> = {}): Promise<Watched> {
  const context = await browser.newContext({
    viewport: { width: 1280, height: 900 },
    extraHTTPHeaders: headers,
  });
  contexts.push(context);
  t.after(() => context.close());
  const page = await context.newPage();
  const watched: Watched = { page, requests: [], sockets: [], errors: [] };
  page.on('request', (request) =>
    watched.requests.push({ url: new URL(request.url()), headers: request.headers(), request }),
  );
  page.on('websocket', (socket) => watched.sockets.push(socket.url()));
  page.on('console', (message) => {
    if (message.type() === 'error') watched.errors.push(message.text());
  });
  page.on('pageerror', (error) => watched.errors.push(error.message));
  // Browser code as text: the project's TypeScript has no DOM types.
  await page.addInitScript(`
    window.cspViolations = [];
    document.addEventListener('securitypolicyviolation', (event) =>
      window.cspViolations.push(event.violatedDirective + ' ' + event.blockedURI));`);
  return watched;
}

async function cspViolations(page: Page): Promise<string[]> {
  return page.evaluate<string[]>('window.cspViolations');
}

const text = (page: Page, selector: string) => page.locator(selector).first().textContent({ timeout: 5000 });
const attribute = (page: Page, selector: string, name: string) =>
  page.locator(selector).first().getAttribute(name, { timeout: 5000 });

async function live(page: Page): Promise<void> {
  await until(
    'the poll state',
    () => text(page, '#poll-state'),
    (state) => state === 'live',
  );
}

before(async () => {
  redis = await TestRedis.start();
  publisher = redis.client();
  account = await HttpBackend.start({ '/api/account': json(accountBody()) });
  // A port known before the hub starts: the page's own origin must be in websocket.allowed_origins.
  const port = await freePort();
  running = await startApp(redis.url, {
    server: { port, trust_proxy: ['127.0.0.1/32'] },
    auth: authOn(),
    websocket: { allowed_origins: [`http://127.0.0.1:${port}`] },
    ops: { allowed_cidrs: ['198.51.100.0/24'] },
    // The breaker opens at the first failure: with the default 50 %, the successes of the earlier tests (one a
    // second, more on a loaded machine) decided how long "down" took to come.
    backend_services: {
      account_monitor: {
        url: account.url,
        interval: '1s',
        timeout: '500ms',
        breaker: { error_threshold_percentage: 1, volume_threshold: 1 },
      },
    },
  });
  await waitReady(running.app);
  browser = await launchChromium();
});

after(async () => {
  for (const context of contexts) await context.close().catch(() => {});
  await browser?.close();
  for (const client of clients) client.close();
  publisher?.disconnect();
  await running?.close();
  await account?.close();
  await redis?.kill();
});

describe('admin page', () => {
  test('GET / redirects to /admin, which renders the live numbers of the hub, within its CSP', async (t) => {
    const { page, errors } = await openPage(t);
    const response = await page.goto(`${running.url}/`);
    assert.equal(page.url(), `${running.url}/admin`);
    assert.equal(response?.status(), 200);
    const csp = response.headers()['content-security-policy'];
    assert.match(csp, /default-src 'self'/);
    assert.match(csp, /connect-src 'self' ws:\/\/127\.0\.0\.1:\d+ wss:\/\/127\.0\.0\.1:\d+/);
    await live(page);
    assert.equal(await text(page, '#epoch'), running.app.state.epoch);

    // A published update: the page shows the sequence /debug reports.
    const before = running.app.state.sequence;
    await publisher.publish('market_data:BTCUSDT', JSON.stringify({ last_price: 64000.5 }));
    await until(
      'the hub sequence',
      () => running.app.state.sequence,
      (sequence) => sequence > before,
    );
    await until(
      'the sequence shown',
      async () => [await attribute(page, '#sequence', 'data-value'), String(running.app.state.sequence)],
      ([shown, hub]) => shown === hub,
    );
    const debug = (await page.evaluate(async () => (await fetch('/debug')).json())) as { sequence: number };
    assert.ok(Number(await attribute(page, '#sequence', 'data-value')) <= debug.sequence);

    // A terminal client connects: clients by type, protocol and format.
    clients.push(await connectClient(running.url, { type: 'tui', token: viewer }));
    await until(
      'tui clients',
      () => text(page, 'tr[data-type="tui"] .open'),
      (open) => open === '1',
    );
    assert.equal(await text(page, 'tr[data-type="tui"] .protocols'), 'hub 1');
    assert.equal(await text(page, 'tr[data-type="tui"] .formats'), 'json 1');
    assert.equal(await text(page, 'tr[data-type="web"] .open'), '0');
    assert.equal(await attribute(page, '#clients', 'data-value'), '1');

    // Ingest per source and topic, and the chart drawn from successive readings.
    await until(
      'the ingest row',
      () => page.locator('tr[data-ingest="redis/market_data"]').count(),
      (rows) => rows === 1,
    );
    await until(
      'the clients chart',
      () => attribute(page, '[data-chart="clients"] path.series', 'd'),
      (d) => /L/.test(d ?? ''),
    );
    assert.notEqual(await text(page, '#messages-rate'), '–', 'a rate after two readings');
    assert.deepEqual(await cspViolations(page), []);
    assert.deepEqual(errors, []);
  });

  test('a backend source going down turns its row red', async (t) => {
    const { page, errors } = await openPage(t);
    await page.goto(`${running.url}/admin`);
    await live(page);
    const row = 'tr[data-source="account_monitor"]';
    await until(
      'account_monitor health',
      () => attribute(page, row, 'data-health'),
      (h) => h === 'ok',
    );
    assert.equal(await attribute(page, 'tr[data-source="redis"]', 'data-health'), 'ok');
    assert.equal(await attribute(page, 'tr[data-source="nats"]', 'data-health'), 'off');
    assert.equal(await attribute(page, 'tr[data-source="history"]', 'data-health'), 'off');
    // A lone hub leads its fleet of one.
    assert.equal(await attribute(page, 'tr[data-source="leader"]', 'data-health'), 'ok');
    assert.match(
      (await text(page, 'tr[data-source="leader"] .status')) ?? '',
      /^leading \(.+\) · takeovers \d+$/,
    );

    await account.close();
    await until(
      'account_monitor health',
      () => attribute(page, row, 'data-health'),
      (h) => h === 'down',
      15_000,
    );
    assert.match((await text(page, `${row} .status`)) ?? '', /^down/);
    assert.match((await text(page, `${row} .error`)) ?? '', /ECONNREFUSED/);
    assert.match((await attribute(page, row, 'class')) ?? '', /\bhealth-down\b/);
    assert.equal(await attribute(page, 'tr[data-source="redis"]', 'data-health'), 'ok', 'only the source');
    assert.deepEqual(errors, []);
  });

  test('polls /debug and /metrics once each every 2 s: far inside the default http.rate_limit', async (t) => {
    const { page, requests } = await openPage(t);
    await page.goto(`${running.url}/admin`);
    await live(page);
    const from = Date.now();
    await sleep(8_500);
    // When the browser started each request (its own clock, not when this process heard of it).
    const times = (path: string) =>
      requests.filter((r) => r.url.pathname === path).map((r) => r.request.timing().startTime);
    for (const path of ['/debug', '/metrics']) {
      const all = times(path);
      const inWindow = all.filter((at) => at >= from);
      assert.ok(
        inWindow.length >= 3 && inWindow.length <= 5,
        `${path}: ${inWindow.length} requests in 8.5 s`,
      );
      const gaps = all.slice(1).map((at, i) => at - all[i]);
      assert.ok(Math.min(...gaps) >= 1800, `${path}: requests ${Math.min(...gaps)}ms apart`);
    }
    // Nothing else polled: the page's files once, then only the two routes.
    const others = requests.filter((r) => !['/debug', '/metrics'].includes(r.url.pathname));
    assert.deepEqual(others.map((r) => r.url.pathname).sort(), [
      '/admin',
      '/admin/admin.css',
      '/admin/admin.js',
    ]);
    // One page: 2 requests per 2 s, 60 a minute, against the default budget shared by every ops and REST route.
    const { max, window } = configFromDocument({ auth: { enabled: false } }).http.rate_limit;
    const perWindow = (2 * window) / 2000;
    assert.ok(perWindow <= max / 4, `${perWindow} requests per window against http.rate_limit.max ${max}`);
  });

  test('try it: /health, /ready, a snapshot and a WebSocket with a pasted token, never in a URL or storage', async (t) => {
    const { page, requests, sockets, errors } = await openPage(t);
    await page.goto(`${running.url}/admin`);
    await live(page);
    const output = () => text(page, '#try-output');

    await page.click('#try-health');
    await until('the /health answer', output, (o) => /^GET \/health\n200 OK\n/.test(o ?? ''));
    assert.match((await output()) ?? '', /"status": "ok"/);
    await page.click('#try-ready');
    await until('the /ready answer', output, (o) => /"status": "ready"/.test(o ?? ''));

    // Without a token: the hub's own 401, shown as it came.
    await page.fill('#topic', 'market_data');
    await page.click('#try-state');
    await until('the refused snapshot', output, (o) => /\n401 /.test(o ?? ''));

    await page.fill('#token', viewer);
    await page.click('#try-state');
    await until('the snapshot', output, (o) => /\n200 OK\n/.test(o ?? ''));
    assert.match((await output()) ?? '', /"market_data": \{/);
    const stateRequest = requests.findLast((r) => r.url.pathname === '/api/v1/state');
    assert.equal(stateRequest?.url.search, '?topics=market_data');
    assert.equal(stateRequest?.headers.authorization, `Bearer ${viewer}`);

    await page.fill('#ws-topics', 'market_data');
    await page.click('#ws-open');
    await until(
      'the socket',
      () => text(page, '#ws-state'),
      (state) => state === 'open',
    );
    await until(
      'the first messages',
      () => page.locator('#ws-messages li').allTextContents(),
      (items) =>
        items.some((m) => m.includes('"type":"subscribed"')) && items.some((m) => m.includes('state_update')),
    );
    assert.equal(running.app.hub.clientsByType().web, 1);
    await page.click('#ws-close');
    await until(
      'the socket',
      () => text(page, '#ws-state'),
      (state) => state === 'closed 1000',
    );

    // The token: only in the Authorization header and the subprotocol, never in a URL, storage or the document.
    assert.equal(sockets.length, 1);
    assert.equal(new URL(sockets[0]).search, '?type=web');
    for (const url of [...requests.map((r) => r.url.href), ...sockets]) assert.ok(!url.includes(viewer), url);
    const kept = await page.evaluate<{ local: number; session: number; cookie: string; html: string }>(
      '({ local: localStorage.length, session: sessionStorage.length, cookie: document.cookie, html: document.documentElement.outerHTML })',
    );
    assert.deepEqual([kept.local, kept.session, kept.cookie], [0, 0, '']);
    assert.ok(!kept.html.includes(viewer));

    // A socket refused (no token): said so, with the reasons the browser cannot tell apart.
    await page.fill('#token', '');
    await page.click('#ws-open');
    await until(
      'the refused socket',
      () => text(page, '#ws-state'),
      (state) => state === 'refused',
    );
    assert.match((await output()) ?? '', /websocket\.allowed_origins/);
    assert.deepEqual(
      errors.filter((e) => !/WebSocket connection to .* failed|status of 401/.test(e)),
      [],
      'only the refusals asked for',
    );
    assert.deepEqual(await cspViolations(page), []);
  });

  test('refused from an address that is not allowed; served to ops.allowed_cidrs and an admin token', async (t) => {
    const outsider = await openPage(t, { 'x-forwarded-for': OUTSIDER });
    for (const path of ['/', '/admin', '/admin/admin.js', '/admin/admin.css']) {
      const response = await outsider.page.goto(`${running.url}${path}`);
      assert.equal(response?.status(), 403, path);
      assert.equal(((await response.json()) as { error: string }).error, 'forbidden', path);
    }

    const ops = await openPage(t, { 'x-forwarded-for': OPS_HOST });
    assert.equal((await ops.page.goto(`${running.url}/admin`))?.status(), 200);
    await live(ops.page);

    // A browser cannot send a token when it opens a page; a proxy in front of the hub can.
    const asOutsider = (authorization?: string) =>
      running.app.inject({
        url: '/admin',
        remoteAddress: OUTSIDER,
        headers: authorization ? { authorization } : {},
      });
    assert.equal((await asOutsider()).statusCode, 403);
    assert.equal((await asOutsider(`Bearer ${viewer}`)).statusCode, 403);
    const page = await asOutsider(`Bearer ${admin}`);
    assert.equal(page.statusCode, 200);
    assert.match(page.headers['content-type'] as string, /^text\/html/);

    // The files are checked again at each load, answered 304 while unchanged.
    const script = await running.app.inject({ url: '/admin/admin.js' });
    assert.equal(script.statusCode, 200);
    const again = await running.app.inject({
      url: '/admin/admin.js',
      headers: { 'if-none-match': script.headers.etag as string },
    });
    assert.equal(again.statusCode, 304);
  });
});
