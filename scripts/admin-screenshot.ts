/**
 * Takes the screenshot of the admin page committed as docs/admin.png: a private Redis, a hub in this process with
 * an account-monitor stand-in that answers and a strategy-engine that does not (a red row), a few clients, market
 * data flowing (and now and then an invalid message), then the page in headless Chromium once its chart has data.
 * The admin page's test (test/e2e/admin.test.ts) never writes the committed file: only this script does.
 *   node scripts/admin-screenshot.ts [--out docs/admin.png] [--seconds 60]
 */
import { once } from 'node:events';
import { createServer } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseCli, usageError } from '../src/cli.ts';
import { DashboardClient } from '../src/client.ts';
import { startApp, waitReady } from './lib/app.ts';
import { CHROMIUM, launchChromium } from './lib/browser.ts';
import { freePort } from './lib/free-port.ts';
import { RedisServer } from './lib/redis-server.ts';

const USAGE = `Usage: node scripts/admin-screenshot.ts [options]
Starts a private redis-server, the hub in this process with backend stand-ins, clients and market traffic, opens
/admin in headless Chromium (${CHROMIUM}, Debian's package) and saves a 1280x900 screenshot once the page
has collected data for --seconds.

Options:
  --out FILE         where the PNG goes (default docs/admin.png)
  --seconds N        how long the page collects data first (default 60)
  -h, --help         this help`;

const { values } = parseCli('admin-screenshot', USAGE, {
  options: {
    out: { type: 'string', default: new URL('../docs/admin.png', import.meta.url).pathname },
    seconds: { type: 'string', default: '60' },
  },
});
const seconds = Number(values.seconds);
if (!Number.isFinite(seconds) || seconds < 5) usageError('admin-screenshot', '--seconds must be 5 or more');

/** account-monitor's GET /api/account, decimals as strings the way it sends them. */
const account = {
  pnl: { realized_pnl: '182.4', unrealized_pnl: '-31.25' },
  balances: {
    USDT: { asset: 'USDT', free: '9100.5', locked: '900', total: '10000.5', usd_value: '10000.5' },
  },
  positions: {
    BTCUSDT: { symbol: 'BTCUSDT', quantity: '0.25', entry_price: '64000', current_price: '64120' },
    ETHUSDT: { symbol: 'ETHUSDT', quantity: '-2', entry_price: '3400', current_price: '3390' },
  },
  timestamp: new Date().toISOString(),
};
const accountMonitor = createServer((request, response) => {
  const found = request.url === '/api/account';
  response.writeHead(found ? 200 : 404, { 'content-type': 'application/json' });
  response.end(
    JSON.stringify(found ? { ...account, timestamp: new Date().toISOString() } : { error: 'not found' }),
  );
});
accountMonitor.listen(0, '127.0.0.1');
await once(accountMonitor, 'listening');
const accountPort = (accountMonitor.address() as { port: number }).port;
// Nothing listens there: strategy-engine's row turns red.
const deadPort = await freePort();

const redis = await RedisServer.start();
const publisher = redis.client();
const running = await startApp(redis.url, {
  backend_services: {
    account_monitor: { url: `http://127.0.0.1:${accountPort}`, interval: '5s', timeout: '2s' },
    strategy_engine: { url: `http://127.0.0.1:${deadPort}`, interval: '5s', timeout: '2s' },
  },
});
const clients: DashboardClient[] = [];
let traffic: NodeJS.Timeout | undefined;
try {
  await waitReady(running.app);
  for (const [type, format, count] of [
    ['web', 'json', 6],
    ['web', 'msgpack', 2],
    ['tui', 'json', 3],
  ] as const) {
    for (let i = 0; i < count; i++) {
      const client = new DashboardClient(running.url, { type, format });
      await client.connected();
      await client.subscribe(['market_data', 'account', 'positions']);
      clients.push(client);
    }
  }
  const prices: Record<string, number> = { BTCUSDT: 64000, ETHUSDT: 3400, SOLUSDT: 150, BNBUSDT: 590 };
  let ticks = 0;
  traffic = setInterval(() => {
    ticks++;
    for (const [symbol, price] of Object.entries(prices)) {
      const next = price * (1 + (Math.random() - 0.5) * 0.0008);
      prices[symbol] = next;
      void publisher.publish(
        `market_data:${symbol}`,
        JSON.stringify({
          symbol,
          last_price: next.toFixed(2),
          bid_price: next - 0.01,
          ask_price: next + 0.01,
        }),
      );
    }
    // Now and then a payload ingest refuses: the invalid column.
    if (ticks % 50 === 0) void publisher.publish('market_data:BTCUSDT', '{"last_price":"not a number"}');
  }, 100);

  const browser = await launchChromium();
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await page.goto(`${running.url}/admin`);
    await sleep(seconds * 1000);
    await page.screenshot({ path: values.out! });
    process.stdout.write(`admin-screenshot: ${values.out}\n`);
  } finally {
    await browser.close();
  }
} finally {
  clearInterval(traffic);
  for (const client of clients) client.close();
  publisher.disconnect();
  await running.close();
  accountMonitor.close();
  await redis.kill();
}
