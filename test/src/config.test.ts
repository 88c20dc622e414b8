import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ConfigError } from '../../src/config/errors.ts';
import { configFromDocument, loadConfig } from '../../src/config/load.ts';
import { parseDuration, parseSize } from '../../src/config/units.ts';

/** Runs `fn`, expecting a ConfigError with a one-line message; returns the message. */
function configError(fn: () => unknown): string {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof ConfigError, `expected a ConfigError, got ${String(caught)}`);
  assert.equal(caught.name, 'ConfigError');
  assert.ok(!caught.message.includes('\n'), `message is not one line: ${JSON.stringify(caught.message)}`);
  return caught.message;
}

/** Auth is on by default and then needs a key: these tests give it one unless they set their own. */
const TEST_SECRET = { DASHBOARD_AUTH__JWT__SECRET: 'test-secret-of-at-least-thirty-two-bytes' };

function fromDoc(document: Record<string, unknown>, env: NodeJS.ProcessEnv = {}) {
  return configFromDocument(structuredClone(document), { ...TEST_SECRET, ...env });
}

const tempDir = mkdtempSync(join(tmpdir(), 'dashboard-config-test-'));
after(() => rmSync(tempDir, { recursive: true, force: true }));
let fileCount = 0;
function yamlFile(text: string): string {
  const path = join(tempDir, `config-${fileCount++}.yaml`);
  writeFileSync(path, text);
  return path;
}

describe('parseDuration', () => {
  test('parses each unit', () => {
    assert.equal(parseDuration('100ms'), 100);
    assert.equal(parseDuration('30s'), 30_000);
    assert.equal(parseDuration('10m'), 600_000);
    assert.equal(parseDuration('2h'), 7_200_000);
    assert.equal(parseDuration('30d'), 2_592_000_000);
    assert.equal(parseDuration('0ms'), 0);
  });

  test('accepts decimals and rounds to whole milliseconds', () => {
    assert.equal(parseDuration('1.5s'), 1500);
    assert.equal(parseDuration('0.25m'), 15_000);
    assert.equal(parseDuration('1.4ms'), 1);
  });

  test('rejects anything else with a ConfigError', () => {
    for (const text of ['', '100', 'ms', '10 s', '1w', '30 days', '-5s', '.5s', '1,5s', 'fast', '10S']) {
      const message = configError(() => parseDuration(text));
      assert.match(message, /not a duration/);
      assert.ok(message.includes(JSON.stringify(text)), message);
    }
  });
});

describe('parseSize', () => {
  test('passes integers through', () => {
    assert.equal(parseSize(65536), 65536);
    assert.equal(parseSize(1), 1);
  });

  test('parses each unit, with or without a space', () => {
    assert.equal(parseSize('10B'), 10);
    assert.equal(parseSize('64KiB'), 65_536);
    assert.equal(parseSize('1MiB'), 1_048_576);
    assert.equal(parseSize('2GiB'), 2 * 1024 ** 3);
    assert.equal(parseSize('1 MiB'), 1_048_576);
  });

  test('rejects anything else with a ConfigError', () => {
    for (const text of ['', '64', '64KB', '64kib', '1.5MiB', 'MiB', '-1KiB', '1  MiB']) {
      const message = configError(() => parseSize(text));
      assert.match(message, /not a size/);
    }
  });
});

describe('configFromDocument: defaults', () => {
  test('an empty document gets every default', () => {
    const config = fromDoc({});
    assert.deepEqual(config, {
      server: {
        host: '0.0.0.0',
        port: 8086,
        log_level: 'info',
        shutdown_timeout: 30_000,
        trust_proxy: [],
        workers: 1,
      },
      leader: { lease: 10_000, key: 'dashboard-server:leader' },
      redis: {
        url: 'redis://localhost:6379',
        db: 0,
        channels: [
          'market_data:*',
          'orderbook:*',
          'trades:*',
          'orders:*',
          'positions:*',
          'account:*',
          'strategies:*',
          'fills:*',
          'alerts:*',
          'risk:*',
        ],
        health_check_interval: 1000,
        health_check_timeout: 2000,
      },
      nats: {
        subjects: {
          orders: 'orders.updates.*',
          fills: 'trading.fills',
          alerts: 'trading.alerts',
          risk_metrics: 'risk.metrics',
          risk_alerts: 'risk.alerts.*',
        },
        ping_interval: 5000,
      },
      websocket: {
        ping_interval: 30_000,
        read_timeout: 60_000,
        max_message_size: 65_536,
        max_buffered: 1_048_576,
        max_lag: 10_000,
        allowed_origins: [],
        require_origin: false,
        max_subscriptions: 50,
        max_clients: 10_000,
        max_clients_per_user: 20,
        global_limits: false,
        rate_limit: { messages_per_second: 10, burst: 20, max_violations: 20, window: 10_000 },
        connect_rate_limit: { max: 60, window: 60_000 },
      },
      http: { rate_limit: { max: 300, window: 60_000 } },
      tracing: { sample_ratio: 1, message_sample_ratio: 0.01 },
      history: {
        flush_interval: 1000,
        account_interval: 10_000,
        retention: 2_592_000_000,
        queue_max_rows: 50_000,
        max_rows: 1000,
        max_buckets: 1500,
        breaker: {
          error_threshold_percentage: 50,
          volume_threshold: 3,
          reset_timeout: 60_000,
          rolling_window: 300_000,
        },
      },
      auth: {
        enabled: true,
        default_role: 'viewer',
        topic_roles: {
          viewer: ['market_data', 'orderbook', 'trades', 'strategies', 'system'],
          trader: ['*'],
          admin: ['*'],
        },
        anonymous: { enabled: false, role: 'viewer', allowed_cidrs: [] },
        jwt: {
          algorithms: ['HS256'],
          secrets: [TEST_SECRET.DASHBOARD_AUTH__JWT__SECRET],
          public_keys: [],
          issuer: undefined,
          audience: undefined,
          clock_tolerance: 5000,
        },
      },
      ops: { allowed_cidrs: [], allowed_hosts: [] },
      legacy: {},
      backend_services: {},
      actions: { enabled: false, roles: ['trader'], rate_limit: { max: 10, window: 60_000 }, timeout: 5000 },
      broadcast: { tui_interval: 100, web_interval: 250, send_phases: 10 },
      ingest: {
        orderbook_depth: 20,
        trades_kept: 50,
        fills_kept: 100,
        alerts_kept: 100,
        terminal_order_retention: 600_000,
        max_message_size: 1_048_576,
        max_symbols: 1000,
        symbol_idle_ttl: 3_600_000,
        max_record_size: 16_384,
        max_entries: 10_000,
        max_state_size: 33_554_432,
        orderbook_pending_max_size: 16_777_216,
      },
    });
  });

  test('a partial section keeps its given keys and fills the others', () => {
    const config = fromDoc({ server: { port: 9000 }, broadcast: { web_interval: '1s' } });
    assert.equal(config.server.port, 9000);
    assert.equal(config.server.host, '0.0.0.0');
    assert.equal(config.server.log_level, 'info');
    assert.equal(config.broadcast.web_interval, 1000);
    assert.equal(config.broadcast.tui_interval, 100);
  });

  test('default lists are not shared between configs', () => {
    const first = fromDoc({});
    first.redis.channels.push('orders:extra');
    assert.equal(fromDoc({}).redis.channels.includes('orders:extra'), false);
  });

  test('durations and sizes are normalized to milliseconds and bytes', () => {
    const config = fromDoc({
      server: { shutdown_timeout: '2h' },
      websocket: { ping_interval: '1.5s', read_timeout: '10m', max_message_size: '1MiB' },
      broadcast: { tui_interval: '100ms', web_interval: '30s' },
      ingest: { terminal_order_retention: '10m', max_message_size: 4096 },
    });
    assert.equal(config.server.shutdown_timeout, 7_200_000);
    assert.equal(config.websocket.ping_interval, 1500);
    assert.equal(config.websocket.read_timeout, 600_000);
    assert.equal(config.websocket.max_message_size, 1_048_576);
    assert.equal(config.broadcast.tui_interval, 100);
    assert.equal(config.broadcast.web_interval, 30_000);
    assert.equal(config.ingest.terminal_order_retention, 600_000);
    assert.equal(config.ingest.max_message_size, 4096);
  });

  test('sizes accept 64KiB', () => {
    assert.equal(fromDoc({ websocket: { max_message_size: '64KiB' } }).websocket.max_message_size, 65_536);
  });
});

describe('configFromDocument: environment overrides', () => {
  test('DASHBOARD_SERVER__PORT sets a number', () => {
    const config = fromDoc({ server: { port: 8086 } }, { DASHBOARD_SERVER__PORT: '8090' });
    assert.equal(config.server.port, 8090);
  });

  test('DASHBOARD_BROADCAST__TUI_INTERVAL sets a duration', () => {
    assert.equal(fromDoc({}, { DASHBOARD_BROADCAST__TUI_INTERVAL: '50ms' }).broadcast.tui_interval, 50);
  });

  test('a flow list overrides a list', () => {
    const config = fromDoc({}, { DASHBOARD_REDIS__CHANNELS: '[orders:*]' });
    assert.deepEqual(config.redis.channels, ['orders:*']);
    const two = fromDoc({}, { DASHBOARD_REDIS__CHANNELS: '[orders:*, positions:*]' });
    assert.deepEqual(two.redis.channels, ['orders:*', 'positions:*']);
  });

  test('an override creates a section the document lacks, and wins over the file', () => {
    const config = fromDoc(
      { websocket: { max_message_size: 100 } },
      { DASHBOARD_WEBSOCKET__MAX_MESSAGE_SIZE: '64KiB', DASHBOARD_INGEST__TRADES_KEPT: '7' },
    );
    assert.equal(config.websocket.max_message_size, 65_536);
    assert.equal(config.ingest.trades_kept, 7);
  });

  test('variables without the prefix or without a double underscore are ignored', () => {
    const config = fromDoc(
      {},
      { PATH: '/bin', DASHBOARD_PORT: 'nonsense', OTHER__PORT: '1', DASHBOARD_SERVER__HOST: undefined },
    );
    assert.equal(config.server.port, 8086);
    assert.equal(config.server.host, '0.0.0.0');
  });

  test('a bad value from the environment names the variable', () => {
    const message = configError(() => fromDoc({}, { DASHBOARD_SERVER__PORT: 'abc' }));
    assert.match(message, /server\.port/);
    assert.match(message, /DASHBOARD_SERVER__PORT/);
  });

  test('an unknown key from the environment names the variable', () => {
    const message = configError(() => fromDoc({}, { DASHBOARD_SERVER__BOGUS: '1' }));
    assert.match(message, /unknown key server\.bogus/);
    assert.match(message, /DASHBOARD_SERVER__BOGUS/);
  });

  test('a bad list item from the environment names the variable', () => {
    const message = configError(() => fromDoc({}, { DASHBOARD_REDIS__CHANNELS: '[nope:*]' }));
    assert.match(message, /redis\.channels/);
    assert.match(message, /DASHBOARD_REDIS__CHANNELS/);
  });

  test('a bad value in the file does not blame an unrelated variable', () => {
    const message = configError(() => fromDoc({ server: { port: 'abc' } }, { DASHBOARD_SERVER__HOST: 'h' }));
    assert.match(message, /server\.port/);
    assert.doesNotMatch(message, /DASHBOARD_/);
  });

  // The range checks done after schema validation (minimum interval, read_timeout > ping_interval)
  // must name the variable too.
  test('an interval below 10ms from the environment names the variable', () => {
    const message = configError(() => fromDoc({}, { DASHBOARD_BROADCAST__TUI_INTERVAL: '5ms' }));
    assert.match(message, /broadcast\.tui_interval/);
    assert.match(message, /DASHBOARD_BROADCAST__TUI_INTERVAL/);
  });

  test('a read_timeout not above ping_interval from the environment names the variable', () => {
    const message = configError(() => fromDoc({}, { DASHBOARD_WEBSOCKET__READ_TIMEOUT: '30s' }));
    assert.match(message, /websocket\.read_timeout/);
    assert.match(message, /DASHBOARD_WEBSOCKET__READ_TIMEOUT/);
  });

  test('a variable with an empty key part is rejected', () => {
    const message = configError(() => fromDoc({}, { DASHBOARD_SERVER__: '1' }));
    assert.match(message, /DASHBOARD_SERVER__/);
  });

  test('a variable that cannot be parsed as YAML is rejected', () => {
    const message = configError(() => fromDoc({}, { DASHBOARD_SERVER__PORT: '[8090' }));
    assert.match(message, /DASHBOARD_SERVER__PORT/);
  });

  test('a variable setting a key inside something that is not a section is rejected', () => {
    const message = configError(() => fromDoc({ server: 'x' }, { DASHBOARD_SERVER__PORT: '1' }));
    assert.match(message, /DASHBOARD_SERVER__PORT/);
    assert.match(message, /server/);
  });
});

describe('configFromDocument: errors', () => {
  test('an unknown key in a section', () => {
    assert.match(
      configError(() => fromDoc({ server: { bogus: 1 } })),
      /unknown key server\.bogus/,
    );
  });

  test('an unknown section', () => {
    assert.match(
      configError(() => fromDoc({ bogus: { a: 1 } })),
      /unknown key bogus/,
    );
  });

  test('a value of the wrong type', () => {
    const message = configError(() => fromDoc({ server: { port: 'abc' } }));
    assert.match(message, /server\.port/);
    assert.match(message, /integer/);
    assert.match(message, /"abc"/);
  });

  test('a value out of range', () => {
    const message = configError(() => fromDoc({ server: { port: 70000 } }));
    assert.match(message, /server\.port/);
    assert.match(message, /0 to 65535/);
    assert.match(message, /70000/);
    assert.match(
      configError(() => fromDoc({ ingest: { orderbook_depth: 0 } })),
      /ingest\.orderbook_depth/,
    );
    assert.match(
      configError(() => fromDoc({ redis: { db: 16 } })),
      /redis\.db/,
    );
  });

  test('an unparsable duration', () => {
    const message = configError(() => fromDoc({ broadcast: { tui_interval: 'fast' } }));
    assert.match(message, /broadcast\.tui_interval/);
    assert.match(message, /duration/);
    assert.match(
      configError(() => fromDoc({ websocket: { ping_interval: 30 } })),
      /websocket\.ping_interval/,
    );
  });

  test('an unparsable size', () => {
    assert.match(
      configError(() => fromDoc({ websocket: { max_message_size: '64KB' } })),
      /websocket\.max_message_size/,
    );
    assert.match(
      configError(() => fromDoc({ ingest: { max_message_size: 0 } })),
      /ingest\.max_message_size/,
    );
  });

  test('ingest.orderbook_pending_max_size: 0 (inline) or at least ingest.max_message_size', () => {
    assert.equal(fromDoc({}).ingest.orderbook_pending_max_size, 16 * 1024 * 1024);
    assert.equal(fromDoc({ ingest: { orderbook_pending_max_size: 0 } }).ingest.orderbook_pending_max_size, 0);
    assert.match(
      configError(() => fromDoc({ ingest: { orderbook_pending_max_size: '512KiB' } })),
      /ingest\.orderbook_pending_max_size must be 0 or at least ingest\.max_message_size/,
    );
  });

  test('a bad log level lists the allowed ones', () => {
    const message = configError(() => fromDoc({ server: { log_level: 'loud' } }));
    assert.match(message, /server\.log_level/);
    assert.match(message, /debug/);
    assert.match(message, /"loud"/);
  });

  test('a redis url that is not redis:// or rediss://', () => {
    assert.match(
      configError(() => fromDoc({ redis: { url: 'http://localhost:6379' } })),
      /redis\.url/,
    );
    assert.equal(fromDoc({ redis: { url: 'rediss://h:6380' } }).redis.url, 'rediss://h:6380');
  });

  test('a channel pattern with an unknown topic prefix', () => {
    const message = configError(() => fromDoc({ redis: { channels: ['orders:*', 'nope:*'] } }));
    assert.match(message, /redis\.channels/);
    assert.match(message, /"nope:\*"/);
    // `system` belongs to the hub and cannot be ingested.
    assert.match(
      configError(() => fromDoc({ redis: { channels: ['system:*'] } })),
      /redis\.channels/,
    );
  });

  test('an empty channel list', () => {
    assert.match(
      configError(() => fromDoc({ redis: { channels: [] } })),
      /redis\.channels/,
    );
  });

  test('read_timeout must be longer than ping_interval', () => {
    const message = configError(() => fromDoc({ websocket: { ping_interval: '60s', read_timeout: '60s' } }));
    assert.match(message, /websocket\.read_timeout/);
    assert.match(message, /websocket\.ping_interval/);
    configError(() => fromDoc({ websocket: { ping_interval: '2m', read_timeout: '60s' } }));
    assert.equal(
      fromDoc({ websocket: { ping_interval: '59s', read_timeout: '60s' } }).websocket.read_timeout,
      60_000,
    );
  });

  test('send phases must leave each phase at least 1ms of the shortest interval', () => {
    assert.equal(fromDoc({ broadcast: { send_phases: 1 } }).broadcast.send_phases, 1);
    assert.equal(fromDoc({ broadcast: { tui_interval: '20ms', send_phases: 20 } }).broadcast.send_phases, 20);
    assert.match(
      configError(() => fromDoc({ broadcast: { tui_interval: '20ms', send_phases: 21 } })),
      /^config: broadcast\.send_phases must leave each phase at least 1ms of the shortest interval \(20ms\), got 21$/,
    );
    assert.match(
      configError(() => fromDoc({ broadcast: { send_phases: 0 } })),
      /broadcast\.send_phases/,
    );
    assert.match(
      configError(() => fromDoc({ broadcast: { send_phases: 2.5 } })),
      /broadcast\.send_phases/,
    );
  });

  test('intervals below 10ms are rejected', () => {
    assert.match(
      configError(() => fromDoc({ broadcast: { tui_interval: '9ms' } })),
      /broadcast\.tui_interval.*10ms/,
    );
    assert.match(
      configError(() => fromDoc({ broadcast: { web_interval: '0s' } })),
      /broadcast\.web_interval/,
    );
    assert.match(
      configError(() => fromDoc({ websocket: { ping_interval: '5ms' } })),
      /websocket\.ping_interval/,
    );
    assert.match(
      configError(() => fromDoc({ redis: { health_check_interval: '0s' } })),
      /redis\.health_check_interval.*10ms/,
    );
    assert.match(
      configError(() => fromDoc({ redis: { health_check_timeout: '1ms' } })),
      /redis\.health_check_timeout.*10ms/,
    );
    assert.equal(fromDoc({ broadcast: { tui_interval: '10ms' } }).broadcast.tui_interval, 10);
  });

  test('a section set to null', () => {
    const message = configError(() => fromDoc({ server: null }));
    assert.match(message, /server/);
  });

  test('a section set to a scalar', () => {
    const message = configError(() => fromDoc({ websocket: 5 }));
    assert.match(message, /websocket/);
  });
});

describe('loadConfig', () => {
  test('reads a YAML file and applies environment overrides', () => {
    const path = yamlFile(
      [
        'server:',
        '  port: 9001',
        '  log_level: debug',
        'websocket:',
        '  max_message_size: 64KiB',
        'broadcast:',
        '  tui_interval: 1.5s',
        'ingest:',
        '  terminal_order_retention: 2h',
        '',
      ].join('\n'),
    );
    const config = loadConfig({ path, env: { ...TEST_SECRET, DASHBOARD_SERVER__PORT: '8090' } });
    assert.equal(config.server.port, 8090);
    assert.equal(config.server.log_level, 'debug');
    assert.equal(config.websocket.max_message_size, 65_536);
    assert.equal(config.broadcast.tui_interval, 1500);
    assert.equal(config.ingest.terminal_order_retention, 7_200_000);
    assert.equal(config.redis.url, 'redis://localhost:6379');
  });

  test('the repository config.yaml loads, reading its secret from secret_file', () => {
    const path = new URL('../../config.yaml', import.meta.url).pathname;
    // A fresh clone has no .dev/jwt-secret until `npm start` makes one: point the key at a file of the test's.
    const secretPath = join(tempDir, 'jwt-secret');
    writeFileSync(secretPath, `${TEST_SECRET.DASHBOARD_AUTH__JWT__SECRET}\n`);
    const config = loadConfig({ path, env: { DASHBOARD_AUTH__JWT__SECRET_FILE: secretPath } });
    assert.equal(config.server.port, 8086);
    assert.deepEqual(config.auth.jwt.secrets, [TEST_SECRET.DASHBOARD_AUTH__JWT__SECRET]);
    assert.ok(config.websocket.allowed_origins.every((origin) => /localhost|127\.0\.0\.1/.test(origin)));
  });

  test('a missing secret_file names the key', () => {
    const message = configError(() =>
      loadConfig({ path: yamlFile('auth:\n  jwt:\n    secret_file: nowhere/secret\n'), env: {} }),
    );
    assert.match(message, /auth\.jwt\.secret_file: cannot read .*nowhere\/secret: ENOENT/);
  });

  test('auth needs a key that fits its algorithms', () => {
    assert.match(
      configError(() => configFromDocument({})),
      /neither auth\.jwt\.secret nor auth\.jwt\.secret_file/,
    );
    assert.match(
      configError(() => configFromDocument({ auth: { jwt: { algorithms: ['RS256'] } } })),
      /neither auth\.jwt\.public_key nor auth\.jwt\.public_key_file/,
    );
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
    assert.match(
      configError(() => fromDoc({ auth: { jwt: { algorithms: ['ES256'], public_key: pem } } })),
      /no HS\* algorithm/,
    );
    assert.match(
      configError(() =>
        configFromDocument({ auth: { jwt: { algorithms: ['HS256'], public_key: pem } } }, TEST_SECRET),
      ),
      /no RS\*, PS\* or ES\* algorithm/,
    );
    assert.deepEqual(
      configFromDocument({ auth: { jwt: { algorithms: ['ES256'], public_key: pem } } }).auth.jwt.public_keys,
      [pem],
    );
    assert.match(
      configError(() => configFromDocument({}, { DASHBOARD_AUTH__JWT__SECRET: 'short' })),
      /at least 32 bytes/,
    );
    assert.match(
      configError(() => fromDoc({ auth: { jwt: { algorithms: ['none'] } } })),
      /auth\.jwt\.algorithms\.0/,
    );
    assert.match(
      configError(() => fromDoc({ auth: { default_role: 'ghost' } })),
      /auth\.default_role "ghost"/,
    );
    assert.match(
      configError(() => fromDoc({ auth: { topic_roles: { x: ['bogus'] } } })),
      /auth\.topic_roles/,
    );
    assert.equal(configFromDocument({ auth: { enabled: false } }).auth.enabled, false);
  });

  test('ops.allowed_cidrs and websocket.allowed_origins are checked', () => {
    assert.match(
      configError(() => fromDoc({ ops: { allowed_cidrs: ['10.0.0.0/33'] } })),
      /ops\.allowed_cidrs/,
    );
    assert.match(
      configError(() => fromDoc({ ops: { allowed_cidrs: ['nonsense'] } })),
      /ops\.allowed_cidrs/,
    );
    assert.deepEqual(fromDoc({ ops: { allowed_cidrs: ['10.1.0.0/16', 'fd00::/8'] } }).ops.allowed_cidrs, [
      '10.1.0.0/16',
      'fd00::/8',
    ]);
    assert.match(
      configError(() => fromDoc({ websocket: { allowed_origins: ['*'] } })),
      /websocket\.allowed_origins/,
    );
  });

  test('backend_services: only configured sources, durations in ms, breaker defaults', () => {
    const config = fromDoc({
      backend_services: {
        order_execution: { url: 'localhost:50051', limit: 200 },
        strategy_engine: {
          url: 'http://localhost:8082',
          interval: '10s',
          api_key: 'k',
          breaker: { reset_timeout: '5s' },
        },
        market_data: { interval: '1m' },
      },
    });
    assert.deepEqual(Object.keys(config.backend_services).sort(), [
      'market_data',
      'order_execution',
      'strategy_engine',
    ]);
    assert.equal(config.backend_services.order_execution?.interval, 30_000);
    assert.equal(config.backend_services.order_execution?.timeout, 5000);
    assert.equal(config.backend_services.order_execution?.limit, 200);
    assert.deepEqual(config.backend_services.strategy_engine?.breaker, {
      error_threshold_percentage: 50,
      volume_threshold: 3,
      reset_timeout: 5000,
      rolling_window: 300_000,
    });
    assert.equal(config.backend_services.market_data?.interval, 60_000);
    assert.match(
      configError(() =>
        fromDoc({ backend_services: { order_execution: { url: 'http://localhost:50051' } } }),
      ),
      /backend_services\.order_execution\.url/,
    );
    assert.match(
      configError(() => fromDoc({ backend_services: { account_monitor: { url: 'localhost:8084' } } })),
      /backend_services\.account_monitor\.url/,
    );
    assert.match(
      configError(() => fromDoc({ backend_services: { market_data: { url: 'http://x:1' } } })),
      /unknown key backend_services\.market_data\.url/,
    );
    assert.match(
      configError(() =>
        fromDoc({
          backend_services: { account_monitor: { url: 'http://x:1', interval: '1s', timeout: '2s' } },
        }),
      ),
      /backend_services\.account_monitor\.timeout must be shorter than its interval/,
    );
  });

  test('a secret from the environment stays a string even when it looks like a number', () => {
    const secret = '12345678901234567890123456789012345';
    assert.deepEqual(configFromDocument({}, { DASHBOARD_AUTH__JWT__SECRET: secret }).auth.jwt.secrets, [
      secret,
    ]);
  });

  test('an empty file gives the defaults', () => {
    const config = loadConfig({ path: yamlFile(''), env: TEST_SECRET });
    assert.equal(config.server.port, 8086);
    assert.equal(config.ingest.terminal_order_retention, 600_000);
  });

  test('env defaults to none', () => {
    assert.equal(
      loadConfig({ path: yamlFile('server:\n  port: 1234\n'), env: TEST_SECRET }).server.port,
      1234,
    );
  });

  test('an unreadable file', () => {
    const missing = join(tempDir, 'does-not-exist.yaml');
    const message = configError(() => loadConfig({ path: missing, env: TEST_SECRET }));
    assert.ok(message.includes(missing), message);
    assert.match(message, /ENOENT/);
    assert.match(
      configError(() => loadConfig({ path: tempDir, env: TEST_SECRET })),
      /cannot read/,
    );
  });

  test('invalid YAML', () => {
    const path = yamlFile('server:\n  port: [8086\n  host: x\n');
    const message = configError(() => loadConfig({ path, env: TEST_SECRET }));
    assert.ok(message.includes(path), message);
    assert.match(message, /not valid YAML/);
  });

  test('YAML that is a list, not a mapping', () => {
    const message = configError(() =>
      loadConfig({ path: yamlFile('- server\n- redis\n'), env: TEST_SECRET }),
    );
    assert.match(message, /mapping/);
  });

  test('YAML that is a scalar, not a mapping', () => {
    assert.match(
      configError(() => loadConfig({ path: yamlFile('just a string\n'), env: TEST_SECRET })),
      /mapping/,
    );
  });

  test('a section left empty (null) in the file', () => {
    const path = yamlFile('server:\nredis:\n  db: 1\n');
    const message = configError(() => loadConfig({ path, env: TEST_SECRET }));
    assert.match(message, /server/);
    assert.ok(message.includes(path), message);
  });

  test('an unknown key in the file', () => {
    const message = configError(() =>
      loadConfig({ path: yamlFile('server:\n  bogus: 1\n'), env: TEST_SECRET }),
    );
    assert.match(message, /unknown key server\.bogus/);
  });

  test('a multi-line string value still gives a one-line message', () => {
    const message = configError(() =>
      loadConfig({ path: yamlFile('server:\n  log_level: "a\\nb"\n'), env: TEST_SECRET }),
    );
    assert.match(message, /server\.log_level/);
  });
});

describe('configFromDocument: nats and the kept fills and alerts', () => {
  test('no url by default: NATS is off; the subjects of the trading system; a ping every 5s', () => {
    const { nats } = fromDoc({});
    assert.equal('url' in nats, false);
    assert.deepEqual(nats.subjects, {
      orders: 'orders.updates.*',
      fills: 'trading.fills',
      alerts: 'trading.alerts',
      risk_metrics: 'risk.metrics',
      risk_alerts: 'risk.alerts.*',
    });
    assert.equal(nats.ping_interval, 5000);
    // A partial subjects section keeps the other defaults.
    const partial = fromDoc({
      nats: { url: 'nats://nats:4222', subjects: { fills: 'fills.>' }, ping_interval: '2s' },
    });
    assert.equal(partial.nats.url, 'nats://nats:4222');
    assert.equal(partial.nats.subjects.fills, 'fills.>');
    assert.equal(partial.nats.subjects.orders, 'orders.updates.*');
    assert.equal(partial.nats.ping_interval, 2000);
  });

  test('subjects: tokens, `*` for one token, a final `>`; set from the environment too', () => {
    for (const subject of ['a', '>', '*', 'a.*.c', 'a.b.>', '*.*', 'orders.*.x', 'A-b_c.9', 'ünï.côde'])
      assert.equal(fromDoc({ nats: { subjects: { fills: subject } } }).nats.subjects.fills, subject, subject);
    const config = fromDoc(
      {},
      { DASHBOARD_NATS__URL: 'nats://a:4222,nats://b:4222', DASHBOARD_NATS__SUBJECTS__ALERTS: 'alerts.>' },
    );
    assert.equal(config.nats.url, 'nats://a:4222,nats://b:4222');
    assert.equal(config.nats.subjects.alerts, 'alerts.>');
  });

  test('an invalid subject stops the config with one line naming its key', () => {
    const bad = [
      'a..b',
      'a.>.b',
      '>.a',
      'has space',
      'tab\there',
      '',
      '.a',
      'a.',
      'a*',
      'a>',
      '**',
      'x'.repeat(257),
    ];
    for (const subject of bad) {
      const message = configError(() => fromDoc({ nats: { subjects: { risk_alerts: subject } } }));
      assert.match(message, /^config: nats\.subjects\.risk_alerts /, JSON.stringify(subject));
    }
    assert.match(
      configError(() => fromDoc({ nats: { subjects: { risk_alerts: 5 } } })),
      /nats\.subjects\.risk_alerts/,
    );
    const fromEnv = configError(() => fromDoc({}, { DASHBOARD_NATS__SUBJECTS__ORDERS: 'orders..x' }));
    assert.match(fromEnv, /nats\.subjects\.orders/);
    assert.match(fromEnv, /DASHBOARD_NATS__SUBJECTS__ORDERS/);
  });

  test('two topics on one subject stop the config, naming both keys', () => {
    const message = configError(() => fromDoc({ nats: { subjects: { orders: 'risk.metrics' } } }));
    assert.match(message, /nats\.subjects\.risk_metrics/);
    assert.match(message, /nats\.subjects\.orders/);
    assert.match(message, /"risk\.metrics"/);
    // The same subject in two places is refused, not two subjects that merely overlap.
    assert.equal(
      fromDoc({ nats: { subjects: { risk_alerts: 'risk.>', risk_metrics: 'risk.metrics' } } }).nats.subjects
        .risk_alerts,
      'risk.>',
    );
  });

  test('two topics on one subject by a variable: the message names the variable', {}, () => {
    const message = configError(() => fromDoc({}, { DASHBOARD_NATS__SUBJECTS__ALERTS: 'trading.fills' }));
    assert.match(message, /nats\.subjects\.alerts/);
    assert.match(message, /DASHBOARD_NATS__SUBJECTS__ALERTS/);
  });

  test('a bad nats.url is refused without printing its password', {}, () => {
    const message = configError(() => fromDoc({}, { DASHBOARD_NATS__URL: 'nats://user:s3cret@nats:4222 ' }));
    assert.match(message, /nats\.url/);
    assert.doesNotMatch(message, /s3cret/);
  });

  test('a url that is not nats:// or tls://, a bad ping interval, an unknown key', () => {
    for (const url of ['http://nats:4222', 'nats://', 'nats://a b', 'nats:4222', ''])
      assert.match(
        configError(() => fromDoc({ nats: { url } })),
        /nats\.url/,
        url,
      );
    assert.equal(fromDoc({ nats: { url: 'tls://user:pw@nats:4222' } }).nats.url, 'tls://user:pw@nats:4222');
    // Each server of a list is checked; a server without a host is named without its password.
    const noHost = configError(() => fromDoc({ nats: { url: 'nats://a:4222,nats://user:s3cret@:4222' } }));
    assert.match(noHost, /^config: nats\.url has "nats:\/\/\*\*\*@:4222"/);
    assert.doesNotMatch(noHost, /s3cret/);
    assert.match(
      configError(() => fromDoc({ nats: { url: 'nats://a:4222,,nats://b:4222' } })),
      /^config: nats\.url has ""/,
    );
    assert.match(
      configError(() => fromDoc({ nats: { ping_interval: '5ms' } })),
      /^config: nats\.ping_interval must be at least 10ms, got 5ms$/,
    );
    assert.match(
      configError(() => fromDoc({}, { DASHBOARD_NATS__PING_INTERVAL: '1ms' })),
      /nats\.ping_interval.*DASHBOARD_NATS__PING_INTERVAL/,
    );
    assert.match(
      configError(() => fromDoc({ nats: { ping_interval: 'often' } })),
      /nats\.ping_interval/,
    );
    assert.match(
      configError(() => fromDoc({ nats: { bogus: 1 } })),
      /unknown key nats\.bogus/,
    );
    assert.match(
      configError(() => fromDoc({ nats: { subjects: { trades: 'x' } } })),
      /unknown key nats\.subjects\.trades/,
    );
  });

  test('ingest.fills_kept and ingest.alerts_kept: 100 by default, whole numbers from 1 to 10000', () => {
    const config = fromDoc({ ingest: { fills_kept: 1, alerts_kept: 10_000 } });
    assert.equal(config.ingest.fills_kept, 1);
    assert.equal(config.ingest.alerts_kept, 10_000);
    assert.equal(fromDoc({}, { DASHBOARD_INGEST__FILLS_KEPT: '7' }).ingest.fills_kept, 7);
    for (const key of ['fills_kept', 'alerts_kept'])
      for (const value of [0, 10_001, 2.5, -1, '10'])
        assert.match(
          configError(() => fromDoc({ ingest: { [key]: value } })),
          new RegExp(`^config: ingest\\.${key} `),
          `${key}: ${value}`,
        );
  });
});

describe('configFromDocument: history', () => {
  test('off by default (no database_url); a write every 1s, a sample every 10s, 30 days kept', () => {
    const { history } = fromDoc({});
    assert.equal(history.database_url, undefined);
    assert.deepEqual(
      [history.flush_interval, history.account_interval, history.retention],
      [1000, 10_000, 30 * 86_400_000],
    );
    assert.deepEqual([history.queue_max_rows, history.max_rows, history.max_buckets], [50_000, 1000, 1500]);
    assert.deepEqual(history.breaker, {
      error_threshold_percentage: 50,
      volume_threshold: 3,
      reset_timeout: 60_000,
      rolling_window: 300_000,
    });
  });

  test('postgres:// and postgresql:// URLs, durations in days, from the file or the environment', () => {
    const url = 'postgres://dashboard:s3cret@db.internal:5432/history?sslmode=require';
    const config = fromDoc({ history: { database_url: url, retention: '7d', flush_interval: '500ms' } });
    assert.equal(config.history.database_url, url);
    assert.equal(config.history.retention, 7 * 86_400_000);
    assert.equal(config.history.flush_interval, 500);
    assert.equal(
      fromDoc({}, { DASHBOARD_HISTORY__DATABASE_URL: 'postgresql://h/db' }).history.database_url,
      'postgresql://h/db',
    );
    assert.equal(fromDoc({}, { DASHBOARD_HISTORY__RETENTION: '1.5d' }).history.retention, 129_600_000);
  });

  test('an invalid database_url or retention stops the config with one line naming the key', () => {
    assert.match(
      configError(() => fromDoc({ history: { database_url: 'mysql://x' } })),
      /^config: history\.database_url must be .*, got "mysql:\/\/x"$/,
    );
    for (const database_url of ['postgres://', 'postgres://a b', 'http://db/x', ''])
      assert.match(
        configError(() => fromDoc({ history: { database_url } })),
        /^config: history\.database_url /,
        database_url,
      );
    assert.match(
      configError(() => fromDoc({ history: { retention: '30 days' } })),
      /^config: history\.retention must be a duration like .*30d, got "30 days"$/,
    );
    assert.match(
      configError(() => fromDoc({}, { DASHBOARD_HISTORY__RETENTION: '30 days' })),
      /history\.retention.*DASHBOARD_HISTORY__RETENTION/,
    );
    assert.match(
      configError(() => fromDoc({ history: { retention: '30m' } })),
      /^config: history\.retention must be at least 1h, got 1800000ms$/,
    );
    assert.match(
      configError(() => fromDoc({ history: { flush_interval: '0s' } })),
      /^config: history\.flush_interval must be at least 10ms, got 0ms$/,
    );
    assert.match(
      configError(() => fromDoc({ history: { queue_max_rows: 99 } })),
      /^config: history\.queue_max_rows must be an integer from 100 to 10000000, got 99$/,
    );
    assert.match(
      configError(() => fromDoc({ history: { breaker: { volume_threshold: 0 } } })),
      /^config: history\.breaker\.volume_threshold /,
    );
    assert.match(
      configError(() => fromDoc({ history: { url: 'postgres://h/db' } })),
      /unknown key history\.url/,
    );
  });

  test('a password in an invalid database_url is not printed', () => {
    for (const database_url of [
      'mysql://dashboard:s3cret@db:3306/history',
      'postgres://dashboard:s3cret@db:5432/history with a space',
    ]) {
      const message = configError(() => fromDoc({ history: { database_url } }));
      assert.match(message, /^config: history\.database_url /);
      assert.match(message, /\/\/\*\*\*@db:/);
      assert.doesNotMatch(message, /s3cret/);
      assert.doesNotMatch(message, /dashboard:/);
    }
    const fromEnv = configError(() =>
      fromDoc({}, { DASHBOARD_HISTORY__DATABASE_URL: 'mysql://dashboard:s3cret@db/history' }),
    );
    assert.match(fromEnv, /history\.database_url.*DASHBOARD_HISTORY__DATABASE_URL/);
    assert.doesNotMatch(fromEnv, /s3cret/);
  });
});
