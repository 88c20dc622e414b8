import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import SwaggerParser from '@apidevtools/swagger-parser';
import type { FastifyInstance } from 'fastify';
import { TABLES } from '../../src/history/rows.ts';
import { type RunningApp, startApp } from '../helpers/app.ts';
import { freePort } from '../helpers/redis.ts';
import { authOn, signToken } from '../helpers/tokens.ts';

/**
 * The OpenAPI document at /openapi.json (plugins/openapi.ts) and the reference page at /docs: the document is valid
 * OpenAPI 3, names every route the app registered with its parameters, responses and refusals, and what it says
 * about tokens holds; the page is served by the hub alone. No Redis: the app serves without one.
 */

const PACKAGE = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  name: string;
  version: string;
};

/**
 * Routes the app registers that the document leaves out on purpose, each with why: @fastify/swagger-ui's page,
 * its assets and its own copies of the document (it marks them hidden itself). Any other route must be documented.
 */
const HIDDEN = new Map([
  ['GET /docs', 'the reference page itself (@fastify/swagger-ui)'],
  ['GET /docs/', 'the reference page itself (@fastify/swagger-ui)'],
  ['GET /docs/static/*', "the page's assets (@fastify/static, inside @fastify/swagger-ui)"],
  ['GET /docs/static/index.html', 'a redirect to the page (@fastify/swagger-ui)'],
  ['GET /docs/static/swagger-initializer.js', "the page's settings script (@fastify/swagger-ui)"],
  ['GET /docs/json', "@fastify/swagger-ui's copy of /openapi.json, which the page loads"],
  ['GET /docs/yaml', "@fastify/swagger-ui's copy of /openapi.json as YAML"],
]);

const HISTORY_ERRORS = ['200', '400', '401', '403', '429', '503'];
/** Each documented operation and the statuses it answers: a route added without its schema fails here. */
const RESPONSES: Record<string, string[]> = {
  'GET /health': ['200'],
  'GET /ready': ['200', '503'],
  'GET /debug': ['200', '403', '429'],
  'GET /metrics': ['200', '403', '429'],
  'GET /openapi.json': ['200', '429'],
  'GET /api/v1/state': ['200', '400', '401', '403', '429'],
  'GET /api/v1/history/candles': HISTORY_ERRORS,
  'GET /api/v1/history/equity': HISTORY_ERRORS,
  'GET /api/v1/history/trades': HISTORY_ERRORS,
  'GET /api/v1/history/orders': HISTORY_ERRORS,
  'GET /api/v1/history/fills': HISTORY_ERRORS,
  'GET /api/v1/history/alerts': HISTORY_ERRORS,
  'GET /api/v1/history': HISTORY_ERRORS,
  'GET /ws': ['101', '400', '401', '403', '404', '429', '503'],
  // plugins/admin.ts
  'GET /': ['302', '403', '429'],
  'GET /admin': ['200', '403', '429'],
  'GET /admin/admin.js': ['200', '403', '429'],
  'GET /admin/admin.css': ['200', '403', '429'],
};

/**
 * Every route the app registered, as `METHOD /path`, read from `printRoutes()`: Fastify lists its routes nowhere
 * else, and buildApp has registered them all before a test could add an onRoute hook. Each line is a node of the
 * router's radix tree (4 characters per level) whose label continues its parent's; the root has none.
 */
function registeredRoutes(app: FastifyInstance): string[] {
  const routes: string[] = [];
  const paths: string[] = [];
  for (const line of app.printRoutes().split('\n')) {
    const node = /^((?:│ {3}| {4})*)[├└]── (.+?)(?: \(([A-Z, ]+)\))?$/.exec(line);
    if (!node) continue;
    const depth = node[1].length / 4;
    const label = node[2] === '(empty root node)' ? '' : node[2];
    const path = (depth > 0 ? paths[depth - 1] : '') + label;
    paths.length = depth;
    paths.push(path);
    for (const method of node[3]?.split(', ') ?? []) routes.push(`${method} ${path}`);
  }
  return routes;
}

type Json = Record<string, unknown>;
interface Operation {
  summary?: string;
  description?: string;
  tags?: string[];
  security?: Record<string, string[]>[];
  parameters?: { name: string; in: string; required?: boolean; schema: { enum?: string[] } }[];
  responses: Record<string, { description: string; content?: Record<string, { schema: Json }> }>;
}
interface Document {
  openapi: string;
  info: { title: string; version: string };
  tags: { name: string }[];
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, Json>; securitySchemes: Record<string, Json> };
}

/** Each documented operation as `METHOD /path`. */
function operations(document: Document): Map<string, Operation> {
  const found = new Map<string, Operation>();
  for (const [path, methods] of Object.entries(document.paths)) {
    for (const [method, operation] of Object.entries(methods))
      found.set(`${method.toUpperCase()} ${path}`, operation);
  }
  return found;
}

/** Fastify's `/a/:id` as OpenAPI's `/a/{id}`. */
const openapiPath = (route: string) => route.replace(/:([A-Za-z0-9_]+)/g, '{$1}');

describe('the OpenAPI document and the reference page', () => {
  let running: RunningApp;
  let document: Document;
  const trader = signToken({ userId: 'tina', role: 'trader' });
  const admin = signToken({ userId: 'adam', role: 'admin' });
  const viewer = signToken({ userId: 'vera' });
  /** A caller that is not loopback (the app trusts loopback as its proxy): operations routes want a token. */
  const remote = { 'x-forwarded-for': '203.0.113.9' };

  before(async () => {
    running = await startApp(`redis://127.0.0.1:${await freePort()}`, {
      auth: authOn(),
      server: { trust_proxy: ['127.0.0.1/32'] },
    });
    const response = await fetch(`${running.url}/openapi.json`);
    assert.equal(response.status, 200);
    assert.match(String(response.headers.get('content-type')), /^application\/json/);
    document = (await response.json()) as Document;
  });
  after(() => running?.close());

  test('GET /openapi.json is a valid OpenAPI 3 document of this service', async () => {
    assert.match(document.openapi, /^3\./);
    assert.equal(document.info.title, PACKAGE.name);
    assert.equal(document.info.version, PACKAGE.version);
    // validate() dereferences the object it is given: a copy.
    await SwaggerParser.validate(structuredClone(document) as never);
    // The page loads @fastify/swagger-ui's copy: the same document.
    assert.deepEqual(await (await fetch(`${running.url}/docs/json`)).json(), document);
  });

  test('every registered route is in the document with its method, and nothing else is', () => {
    const registered = registeredRoutes(running.app).filter(
      (route) => !route.startsWith('HEAD ') && !route.startsWith('OPTIONS '),
    );
    assert.ok(registered.length > 10, registered.join('\n'));
    for (const hidden of HIDDEN.keys())
      assert.ok(registered.includes(hidden), `${hidden} is no longer registered`);
    const expected = registered
      .filter((route) => !HIDDEN.has(route))
      .map(openapiPath)
      .sort();
    assert.deepEqual([...operations(document).keys()].sort(), expected);
  });

  test('every operation says what it is, answers 200, 101 or a redirect, and documents each refusal in the error shape', () => {
    const tags = new Set(document.tags.map((tag) => tag.name));
    const schemes = new Set(Object.keys(document.components.securitySchemes));
    assert.deepEqual([...schemes].sort(), ['bearerAuth', 'tokenQuery']);
    assert.deepEqual(Object.keys(document.components.schemas.ErrorBody.properties as Json).sort(), [
      'error',
      'message',
    ]);
    for (const [name, operation] of operations(document)) {
      assert.ok(operation.summary && operation.description, `${name}: summary and description`);
      assert.ok(operation.tags?.length && operation.tags.every((tag) => tags.has(tag)), `${name}: tags`);
      const statuses = Object.keys(operation.responses).sort();
      assert.deepEqual(statuses, RESPONSES[name], `${name}: responses`);
      // What it answers when it does its job: a 200, the upgrade's 101, or a redirect.
      assert.ok(
        statuses.some((status) => /^(200|101|3\d\d)$/.test(status)),
        `${name}: a success`,
      );
      for (const [status, response] of Object.entries(operation.responses)) {
        assert.notEqual(response.description, 'Default Response', `${name} ${status}: a description`);
        if (Number(status) < 400) continue;
        const schema = response.content?.['application/json']?.schema;
        assert.ok(schema, `${name} ${status}: a JSON body`);
        if (name === 'GET /ready') {
          // /ready's 503 is the error shape plus the `status` and `reason` probes read.
          assert.deepEqual((schema.required as string[]).slice(0, 2), ['error', 'message']);
        } else {
          assert.deepEqual(schema, { $ref: '#/components/schemas/ErrorBody' }, `${name} ${status}`);
        }
      }
      // A route that refuses a missing token says which tokens it takes; a public one names none.
      for (const requirement of operation.security ?? []) {
        for (const scheme of Object.keys(requirement)) assert.ok(schemes.has(scheme), `${name}: ${scheme}`);
      }
      const needsToken = '401' in operation.responses;
      const ops = operation.tags?.includes('operations');
      assert.equal(operation.security !== undefined, needsToken || ops, `${name}: security`);
      if (needsToken)
        assert.ok(
          operation.security?.every((r) => Object.keys(r).length > 0),
          name,
        );
      if (ops)
        assert.ok(
          operation.security?.some((r) => Object.keys(r).length === 0),
          `${name}: loopback`,
        );
    }
  });

  test('the /ws upgrade is documented with its query parameters and token', () => {
    const ws = document.paths['/ws'].get;
    const parameters = Object.fromEntries((ws.parameters ?? []).map((p) => [p.name, p]));
    assert.deepEqual(Object.keys(parameters).sort(), ['format', 'protocol', 'type']);
    assert.deepEqual(parameters.type.schema.enum, ['tui', 'web']);
    assert.deepEqual(parameters.format.schema.enum, ['json', 'msgpack']);
    assert.equal(parameters.format.required, false, 'format defaults to json');
    assert.deepEqual(parameters.protocol.schema.enum, ['hub', 'b25-web', 'b25-tui']);
    // `token` is the tokenQuery security scheme: `?token=`.
    assert.deepEqual(document.components.securitySchemes.tokenQuery, {
      ...document.components.securitySchemes.tokenQuery,
      type: 'apiKey',
      in: 'query',
      name: 'token',
    });
    assert.ok(ws.security?.some((requirement) => 'tokenQuery' in requirement));
    assert.equal(ws.responses['101'].content, undefined, 'a 101 has no body');
  });

  test('the history rows name exactly the columns the queries return', () => {
    for (const kind of ['trades', 'orders', 'fills', 'alerts'] as const) {
      const page = document.paths[`/api/v1/history/${kind}`].get.responses['200'].content?.[
        'application/json'
      ].schema as { properties: { rows: { items: { properties: Json } } } };
      assert.deepEqual(Object.keys(page.properties.rows.items.properties), [...TABLES[kind].columns], kind);
    }
  });

  test('the tokens the document names are the ones each route takes', async () => {
    const sample: Record<string, string> = { symbol: 'BTCUSDT', type: 'trades', format: 'json' };
    const call = async (path: string, query: URLSearchParams, headers: Record<string, string> = {}) => {
      const response = await fetch(`${running.url}${path}?${query}`, { headers, redirect: 'manual' });
      await response.body?.cancel();
      return response.status;
    };
    let checked = 0;
    for (const [name, operation] of operations(document)) {
      if (!operation.security?.some((requirement) => 'tokenQuery' in requirement)) continue;
      const path = name.slice('GET '.length);
      const query = new URLSearchParams();
      for (const parameter of operation.parameters ?? []) {
        const value = sample[parameter.name];
        const allowed = parameter.schema.enum;
        if (value !== undefined)
          query.set(parameter.name, !allowed || allowed.includes(value) ? value : allowed[0]);
      }
      const withToken = (token: string) => new URLSearchParams([...query, ['token', token]]);
      if (operation.tags?.includes('operations')) {
        // Loopback needs none; from elsewhere, `?token=` of an admin.
        assert.ok((await call(path, query)) < 400, name);
        assert.equal(await call(path, query, remote), 403, name);
        assert.equal(await call(path, withToken(viewer), remote), 403, name);
        assert.ok((await call(path, withToken(admin), remote)) < 400, name);
      } else {
        assert.equal(await call(path, query), 401, name);
        // Past the token: the state answers, history is off (no history.database_url), /ws is no upgrade here.
        const expected = path === '/ws' ? 404 : path.startsWith('/api/v1/history') ? 503 : 200;
        assert.equal(await call(path, withToken(trader)), expected, `${name} with ?token=`);
        assert.equal(await call(path, query, { authorization: `Bearer ${trader}` }), expected, name);
      }
      checked++;
    }
    // /debug, /metrics, /api/v1/state, the 7 history routes and /ws at least.
    assert.ok(checked >= 11, String(checked));
  });

  test('GET /docs is a page served by the hub alone', async () => {
    const response = await fetch(`${running.url}/docs`);
    assert.equal(response.status, 200);
    assert.match(String(response.headers.get('content-type')), /^text\/html/);
    const csp = String(response.headers.get('content-security-policy'));
    assert.match(csp, /default-src 'self'/);
    assert.match(csp, /script-src 'self'(;|$)/);
    const html = await response.text();
    const { host } = new URL(running.url);
    for (const url of html.match(/https?:\/\/[^\s"'<>)]+/g) ?? []) {
      assert.equal(new URL(url).host, host, `the page names another host: ${url}`);
    }
    const assets = [...html.matchAll(/\b(?:src|href)="([^"]+)"/g)].map((match) => match[1]);
    assert.ok(assets.length >= 4, html);
    for (const asset of assets) {
      assert.doesNotMatch(asset, /^(https?:)?\/\//, asset);
      const loaded = await fetch(new URL(asset, `${running.url}/docs`));
      assert.equal(loaded.status, 200, asset);
      await loaded.body?.cancel();
    }
  });
});

describe('the reference counts against http.rate_limit', () => {
  let running: RunningApp;
  before(async () => {
    running = await startApp(`redis://127.0.0.1:${await freePort()}`, {
      http: { rate_limit: { max: 2, window: '1m' } },
    });
  });
  after(() => running?.close());

  test('the document, the page and its assets share the budget of every REST route', async () => {
    const status = async (path: string) => {
      const response = await fetch(`${running.url}${path}`);
      const body = await response.text();
      return { status: response.status, body };
    };
    assert.equal((await status('/openapi.json')).status, 200);
    assert.equal((await status('/docs/static/index.css')).status, 200);
    const refused = await status('/docs');
    assert.equal(refused.status, 429);
    assert.equal((JSON.parse(refused.body) as { error: string }).error, 'rate_limited');
    assert.equal((await status('/openapi.json')).status, 429);
    // The probes stay unlimited.
    assert.equal((await status('/health')).status, 200);
  });
});
