import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { extractToken, redactTokenInUrl } from '../../src/access.ts';
import { type RunningApp, startApp, waitReady } from '../helpers/app.ts';
import { openSocket, refusedUpgrade } from '../helpers/client.ts';
import { logCollector } from '../helpers/logs.ts';
import { TestRedis } from '../helpers/redis.ts';
import { authOn, SECRET_OTHER, signatureOf, signToken } from '../helpers/tokens.ts';

/**
 * Tokens travel in a header, a subprotocol and the query string; none of them, nor their signature alone, may
 * reach a log line, while the requests themselves are logged (with the query token masked).
 */

let redis: TestRedis;

before(async () => {
  redis = await TestRedis.start();
});

after(async () => {
  await redis.kill();
});

/** An app logging at info into a collector. */
async function loggingApp(): Promise<{ running: RunningApp; log: ReturnType<typeof logCollector> }> {
  const log = logCollector();
  const running = await startApp(
    redis.url,
    {
      server: { log_level: 'info' },
      auth: authOn(),
      websocket: { connect_rate_limit: { max: 1000, window: '1m' } },
    },
    { logStream: log.stream },
  );
  await waitReady(running.app);
  return { running, log };
}

/** Asserts that no token, and no token's signature, appears anywhere in the log. */
function assertNoToken(text: string, tokens: Record<string, string>): void {
  for (const [label, token] of Object.entries(tokens)) {
    assert.ok(!text.includes(token), `the ${label} token is in the log`);
    assert.ok(!text.includes(signatureOf(token)), `the signature of the ${label} token is in the log`);
    assert.ok(!text.includes(encodeURIComponent(token)), `the ${label} token (URL-encoded) is in the log`);
  }
}

test('tokens in the header, the subprotocol and the query never reach the log', async () => {
  const { running, log } = await loggingApp();
  const tokens = {
    header: signToken({ userId: 'logged-header' }),
    subprotocol: signToken({ userId: 'logged-subprotocol' }),
    query: signToken({ userId: 'logged-query' }),
    refresh: signToken({ userId: 'logged-header', email: 'again@example.com' }),
    refusedRefresh: signToken({ userId: 'someone-else' }),
    forgedUpgrade: signToken({ userId: 'forger', role: 'admin' }, SECRET_OTHER),
    badQuery: signToken({ userId: 'bad-query' }),
    rest: signToken({ userId: 'rest-user' }),
    restForbidden: signToken({ userId: 'rest-viewer' }),
    restDebug: signToken({ userId: 'rest-admin', role: 'admin' }),
    restHeader: signToken({ userId: 'rest-header' }),
  };
  const header = await openSocket(running.url, { token: tokens.header, via: 'header' });
  const subprotocol = await openSocket(running.url, { token: tokens.subprotocol, via: 'subprotocol' });
  const query = await openSocket(running.url, { token: tokens.query, via: 'query' });
  assert.equal(
    (await header.request({ action: 'auth', token: tokens.refresh }, 'authenticated', 'error')).type,
    'authenticated',
  );
  assert.equal(
    (await header.request({ action: 'auth', token: tokens.refusedRefresh }, 'authenticated', 'error')).type,
    'error',
  );
  assert.equal(
    (await refusedUpgrade(running.url, { token: tokens.forgedUpgrade, via: 'query' })).status,
    401,
  );
  const badQuery = await refusedUpgrade(running.url, {
    token: tokens.badQuery,
    via: 'query',
    query: 'type=desktop',
  });
  assert.equal(badQuery.status, 400);

  const rest = await fetch(`${running.url}/api/v1/state?token=${tokens.rest}`);
  assert.equal(rest.status, 200);
  const forbidden = await fetch(`${running.url}/api/v1/state?topics=orders&token=${tokens.restForbidden}`);
  assert.equal(forbidden.status, 403);
  const debug = await fetch(`${running.url}/debug?token=${tokens.restDebug}`);
  assert.equal(debug.status, 200);
  const viaHeader = await fetch(`${running.url}/api/v1/state`, {
    headers: { Authorization: `Bearer ${tokens.restHeader}` },
  });
  assert.equal(viaHeader.status, 200);
  await Promise.all([rest, forbidden, debug, viaHeader].map((response) => response.arrayBuffer()));
  await Promise.all([header.close(), subprotocol.close(), query.close()]);
  await running.close();

  const text = log.text();
  assertNoToken(text, tokens);
  // The requests are logged, with the token masked.
  const urls = log
    .lines()
    .filter((line) => line.msg === 'incoming request')
    .map((line) => (line.req as { url: string }).url);
  assert.ok(urls.includes('/ws?type=web&format=json&token=***'), urls.join('\n'));
  assert.ok(urls.includes('/ws?type=web&format=json'), 'the header and subprotocol upgrades are logged');
  assert.ok(urls.includes('/api/v1/state?token=***'), urls.join('\n'));
  assert.ok(urls.includes('/api/v1/state?topics=orders&token=***'), urls.join('\n'));
  assert.ok(urls.includes('/debug?token=***'), urls.join('\n'));
  assert.ok(text.includes('token=***'));
});

test('a token in the query of a request for an unknown route never reaches the log', async () => {
  const { running, log } = await loggingApp();
  const tokens = {
    typo: signToken({ userId: 'typo-user' }),
    trailingSlash: signToken({ userId: 'slash-user' }),
  };
  const typo = await fetch(`${running.url}/api/v1/states?token=${tokens.typo}`);
  assert.equal(typo.status, 404);
  const slash = await fetch(`${running.url}/api/v1/state/?token=${tokens.trailingSlash}`);
  assert.equal(slash.status, 404);
  await Promise.all([typo.arrayBuffer(), slash.arrayBuffer()]);
  await running.close();
  const text = log.text();
  assert.ok(text.includes('/api/v1/states?token=***'), 'the request is logged, masked');
  assertNoToken(text, tokens);
});

/** Decodes every `%XX` of `text` (what a reader of the log, or a tool, would do), leaving malformed ones. */
function percentDecoded(text: string): string {
  return text.replace(/(?:%[0-9a-f]{2})+/gi, (run) => {
    try {
      return decodeURIComponent(run);
    } catch {
      return run;
    }
  });
}

/** Every URL a log line carries: the request serializer's `req.url` and the not-found handler's `url`. */
function loggedUrls(lines: Record<string, unknown>[]): string[] {
  const urls: string[] = [];
  for (const line of lines) {
    const req = line.req as { url?: unknown } | undefined;
    if (typeof req?.url === 'string') urls.push(req.url);
    if (typeof line.url === 'string') urls.push(line.url);
  }
  return urls;
}

/** Every value the query parser of `extractToken` (URLSearchParams) would read as `token` in `url`. */
function tokenValues(url: string): string[] {
  const query = url.indexOf('?');
  return query === -1 ? [] : new URLSearchParams(url.slice(query + 1)).getAll('token');
}

test('a query token spelled any way the parser accepts (%74oken, t%6Fken, encoded value, repeated) never reaches the log', async (t) => {
  const { running, log } = await loggingApp();
  t.after(() => running.close());
  const tokens = {
    encodedT: signToken({ userId: 'encoded-t' }),
    encodedO: signToken({ userId: 'encoded-o' }),
    encodedAll: signToken({ userId: 'encoded-all' }),
    encodedValue: signToken({ userId: 'encoded-value' }),
    doubleQuestion: signToken({ userId: 'double-question' }),
    repeated: signToken({ userId: 'repeated' }),
    rest: signToken({ userId: 'rest-encoded' }),
    notFound: signToken({ userId: 'not-found-encoded' }),
    notFoundUpper: signToken({ userId: 'not-found-upper' }),
    semicolon: signToken({ userId: 'semicolon' }),
  };
  const everyChar = (text: string) =>
    [...text].map((c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`).join('');
  const accepted = [
    `type=web&format=json&%74oken=${tokens.encodedT}`,
    `type=web&format=json&t%6Fken=${tokens.encodedO}`,
    `type=web&format=json&%74%6F%6B%65%6E=${tokens.encodedAll}`,
    `type=web&format=json&token=${everyChar(tokens.encodedValue)}`,
    `?token=${tokens.doubleQuestion}&type=web`,
    `type=web&token=${tokens.repeated}&token=${tokens.repeated}`,
  ];
  for (const query of accepted) {
    // The hub accepts each spelling: it is a token, so it must be masked like one.
    const socket = await openSocket(running.url, { query });
    await socket.close();
  }
  const rest = await fetch(`${running.url}/api/v1/state?%74oken=${tokens.rest}`);
  assert.equal(rest.status, 200);
  const notFound = await fetch(`${running.url}/nope?%74oken=${tokens.notFound}`);
  assert.equal(notFound.status, 404);
  const notFoundBody = await notFound.text();
  assert.ok(!notFoundBody.includes(signatureOf(tokens.notFound)), notFoundBody);
  const upper = await fetch(`${running.url}/nope?a=1&TOKEN=${tokens.notFoundUpper}`);
  assert.equal(upper.status, 404);
  // Not a token to the hub (URLSearchParams does not split on `;`), but a token all the same: never logged.
  const semicolon = await fetch(`${running.url}/nope?a=1;token=${tokens.semicolon}`);
  assert.equal(semicolon.status, 404);
  await Promise.all([rest.arrayBuffer(), upper.arrayBuffer(), semicolon.arrayBuffer()]);
  await running.close();

  const text = log.text();
  assertNoToken(text, tokens);
  assertNoToken(percentDecoded(text), tokens);
  const lines = log.lines();
  const urls = loggedUrls(lines);
  // Each request is still logged (the spelling of the key is kept, its value masked).
  assert.ok(urls.includes('/ws?type=web&format=json&%74oken=***'), urls.join('\n'));
  assert.ok(urls.includes('/api/v1/state?%74oken=***'), urls.join('\n'));
  assert.ok(urls.includes('/ws??token=***&type=web'), urls.join('\n'));
  assert.ok(urls.includes('/nope?a=1;token=***'), urls.join('\n'));
  assert.ok(
    lines.some((line) => line.msg === 'route not found' && line.url === '/nope?%74oken=***'),
    urls.join('\n'),
  );
  for (const url of urls) {
    for (const value of tokenValues(url)) assert.equal(value, '***', url);
  }
});

test('redactTokenInUrl masks every query spelling extractToken accepts (generated spellings)', () => {
  const jwt = signToken({ userId: 'generated' });
  // Each letter of `token` as itself or as %XX in either hex case; the value as itself or wholly percent-encoded.
  const spellings = (text: string) =>
    [...text].map((c) => {
      const hex = c.charCodeAt(0).toString(16);
      return [c, `%${hex}`, `%${hex.toUpperCase()}`];
    });
  const names: string[] = [''];
  for (const options of spellings('token')) {
    const next: string[] = [];
    for (const prefix of names) for (const option of options) next.push(prefix + option);
    names.splice(0, names.length, ...next);
  }
  const encodedValue = [...jwt].map((c) => `%${c.charCodeAt(0).toString(16)}`).join('');
  let checked = 0;
  for (const name of names) {
    for (const value of [jwt, encodedValue]) {
      for (const url of [
        `/ws?${name}=${value}`,
        `/ws?type=web&${name}=${value}&format=json`,
        `/ws??${name}=${value}`,
        `/ws?${name}=&${name}=${value}`,
        `/ws?${name}=${value}#frag`,
      ]) {
        const redacted = redactTokenInUrl(url);
        assert.ok(!redacted.includes(value), `${url} -> ${redacted}`);
        const left = extractToken({}, redacted)?.token;
        assert.ok(left === undefined || left === '***', `${url} -> ${redacted}`);
        checked++;
      }
    }
  }
  assert.equal(checked, 3 ** 5 * 2 * 5);
  // What is no token stays as it was.
  assert.equal(redactTokenInUrl('/ws?type=web&format=json'), '/ws?type=web&format=json');
  assert.equal(redactTokenInUrl('/ws?tokens=1&my_token=2&token'), '/ws?tokens=1&my_token=2&token');
});
