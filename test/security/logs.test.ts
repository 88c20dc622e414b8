import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type RunningApp, startApp, waitReady } from '../helpers/app.ts';
import { TestRedis } from '../helpers/redis.ts';
import { logCollector, openSocket, refusedUpgrade } from '../helpers/security-sockets.ts';
import { authOn, hsToken, SECRET_OTHER, signatureOf } from '../helpers/security-tokens.ts';

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
    header: hsToken({ userId: 'logged-header' }),
    subprotocol: hsToken({ userId: 'logged-subprotocol' }),
    query: hsToken({ userId: 'logged-query' }),
    refresh: hsToken({ userId: 'logged-header', email: 'again@example.com' }),
    refusedRefresh: hsToken({ userId: 'someone-else' }),
    forgedUpgrade: hsToken({ userId: 'forger', role: 'admin' }, SECRET_OTHER),
    badQuery: hsToken({ userId: 'bad-query' }),
    rest: hsToken({ userId: 'rest-user' }),
    restForbidden: hsToken({ userId: 'rest-viewer' }),
    restDebug: hsToken({ userId: 'rest-admin', role: 'admin' }),
    restHeader: hsToken({ userId: 'rest-header' }),
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
    typo: hsToken({ userId: 'typo-user' }),
    trailingSlash: hsToken({ userId: 'slash-user' }),
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
