import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parse, stringify } from 'yaml';
import { HISTORY_KINDS } from '../../src/history/rows.ts';
import { type Stack, startStack, stopStack } from '../helpers/app.ts';

const root = new URL('../../', import.meta.url);
const DASHBOARD = new URL('ops/grafana/dashboard-server.json', root);
const RULES = new URL('ops/prometheus/alerts.yml', root);
const RULE_TESTS = new URL('ops/prometheus/alerts.test.yml', root);
/** Grafana's data source variable, on every panel and query. */
// biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's syntax, not a template string
const DATASOURCE = '${datasource}';

/** Series no hub exports but that the rules may name: Prometheus's own, one per scrape target. */
const PROMETHEUS_OWN = new Set(['up']);

interface Target {
  expr?: string;
  refId?: string;
  datasource?: { type?: string; uid?: string };
}
interface Panel {
  id: number;
  type: string;
  title?: string;
  datasource?: { type?: string; uid?: string };
  gridPos?: { h: number; w: number; x: number; y: number };
  targets?: Target[];
  panels?: Panel[];
}
interface Variable {
  name: string;
  type: string;
  query: unknown;
  datasource?: { uid?: string };
}
interface Dashboard {
  uid: string;
  title: string;
  schemaVersion: number;
  panels: Panel[];
  templating: { list: Variable[] };
}
interface Rule {
  alert?: string;
  record?: string;
  expr: unknown;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface RuleFile {
  groups: { name: string; rules: Rule[] }[];
}

const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard;
const rules = parse(readFileSync(RULES, 'utf8')) as RuleFile;

/** Every panel, those inside collapsed rows too. */
function allPanels(panels: Panel[]): Panel[] {
  return panels.flatMap((panel) => [panel, ...allPanels(panel.panels ?? [])]);
}

const PROMQL_WORDS = new Set([
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'and',
  'or',
  'unless',
  'bool',
  'offset',
  'inf',
  'nan',
]);

/**
 * The metric names a PromQL expression selects: identifiers left once strings, Grafana variables, label
 * matchers, ranges and label lists are taken out, except function names (followed by `(`), keywords and the
 * exponents or units of numbers (after a digit).
 */
function metricNames(expr: string): string[] {
  const rest = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\$\{?\w+\}?/g, ' ')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const names = new Set<string>();
  for (const match of rest.matchAll(/[a-zA-Z_:][\w:]*/g)) {
    const [name] = match;
    const before = rest[match.index - 1];
    const next = rest.slice(match.index + name.length).trimStart()[0];
    if (before !== undefined && /[\w.]/.test(before)) continue;
    if (next === '(' || PROMQL_WORDS.has(name.toLowerCase())) continue;
    names.add(name);
  }
  return [...names];
}

/** Series names in Prometheus text: each family (`# TYPE`) with its histogram or summary series, and each sample. */
function exportedNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\w+)$/.exec(line);
    if (type) {
      const [, name, kind] = type;
      names.add(name);
      if (kind === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(name + suffix);
      if (kind === 'summary') for (const suffix of ['_sum', '_count']) names.add(name + suffix);
      // OpenMetrics names a counter's family without `_total`; its samples have it.
      if (kind === 'counter' && !name.endsWith('_total')) names.add(`${name}_total`);
    } else if (line !== '' && !line.startsWith('#')) {
      names.add(/^[a-zA-Z_:][\w:]*/.exec(line)![0]);
    }
  }
  return names;
}

/** The value of one sample (`name{labels}` exactly as printed), undefined when absent. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

const dashboardExprs = (): { where: string; expr: string }[] => [
  ...allPanels(dashboard.panels).flatMap((panel) =>
    (panel.targets ?? []).map((target) => ({
      where: `panel ${panel.id} "${panel.title}" ${target.refId}`,
      expr: String(target.expr),
    })),
  ),
];

/** `label_values(metric, label)` in the template variables: the metric selector, as PromQL. */
const variableExprs = (): { where: string; expr: string }[] =>
  dashboard.templating.list.flatMap((variable) => {
    const query =
      typeof variable.query === 'string' ? variable.query : (variable.query as { query?: string })?.query;
    const selector = query === undefined ? undefined : /label_values\(\s*([^,)]+)/.exec(query)?.[1];
    return selector === undefined ? [] : [{ where: `variable ${variable.name}`, expr: selector }];
  });

const ruleExprs = (): { where: string; expr: string }[] =>
  rules.groups.flatMap((group) =>
    group.rules.map((rule) => ({ where: `rule ${rule.alert ?? rule.record}`, expr: String(rule.expr) })),
  );

describe('metricNames', () => {
  test('finds the selected metrics, not functions, labels, keywords, variables or durations', () => {
    assert.deepEqual(
      metricNames(
        'histogram_quantile(0.99, sum by (le, client_type) (rate(a_bucket{instance=~"$instance",x="y(z)"}[$__rate_interval])))',
      ),
      ['a_bucket'],
    );
    assert.deepEqual(metricNames('b == 0 and on (instance) c == 1 offset 5m'), ['b', 'c']);
    assert.deepEqual(metricNames('time() - d{job="x"} > 1e3'), ['d']);
    assert.deepEqual(metricNames('min_over_time(e[1m]) >= 1'), ['e']);
  });
});

describe('the Grafana dashboard', () => {
  test('parses, with a datasource variable and an instance variable', () => {
    assert.equal(dashboard.uid, 'dashboard-server');
    assert.ok(dashboard.schemaVersion >= 36, `schemaVersion ${dashboard.schemaVersion}`);
    const variables = new Map(dashboard.templating.list.map((v) => [v.name, v]));
    assert.equal(variables.get('datasource')?.type, 'datasource');
    assert.equal(variables.get('datasource')?.query, 'prometheus');
    const instance = variables.get('instance');
    assert.equal(instance?.type, 'query');
    assert.equal(instance?.datasource?.uid, DATASOURCE);
    assert.match(JSON.stringify(instance?.query), /label_values\(dashboard_state_sequence, instance\)/);
  });

  test('every panel has a unique id, a place, the datasource variable and a query on $instance', () => {
    const panels = allPanels(dashboard.panels);
    assert.ok(panels.length >= 20, `${panels.length} panels`);
    const ids = panels.map((panel) => panel.id);
    assert.equal(new Set(ids).size, ids.length, `duplicate ids: ${ids}`);
    for (const panel of panels) {
      assert.ok(Number.isInteger(panel.id), `panel id ${panel.id}`);
      assert.ok(panel.title, `panel ${panel.id} has a title`);
      const { x, w } = panel.gridPos!;
      assert.ok(x >= 0 && w > 0 && x + w <= 24, `panel ${panel.id} within the 24 columns`);
      if (panel.type === 'row') continue;
      assert.equal(panel.datasource?.uid, DATASOURCE, `panel ${panel.id} datasource`);
      const targets = panel.targets ?? [];
      assert.ok(targets.length >= 1, `panel ${panel.id} "${panel.title}" has a query`);
      const refIds = targets.map((target) => target.refId);
      assert.equal(new Set(refIds).size, refIds.length, `panel ${panel.id} refIds`);
      for (const target of targets) {
        assert.equal(target.datasource?.uid, DATASOURCE, `panel ${panel.id} ${target.refId} datasource`);
        assert.ok(target.expr, `panel ${panel.id} ${target.refId} has an expression`);
        assert.match(
          target.expr!,
          /instance=~"\$instance"/,
          `panel ${panel.id} ${target.refId} on $instance`,
        );
      }
    }
  });

  test('shows what the issue asks for', () => {
    const named = new Set(dashboardExprs().flatMap(({ expr }) => metricNames(expr)));
    for (const name of [
      'dashboard_websocket_clients_total',
      'dashboard_sent_messages_total',
      'dashboard_sent_bytes_total',
      'dashboard_sent_protocol_bytes_total',
      'dashboard_broadcast_duration_seconds_bucket',
      'dashboard_slow_consumer_skips_total',
      'dashboard_websocket_max_buffered_bytes',
      'dashboard_disconnects_total',
      'dashboard_ingest_messages_total',
      'dashboard_ingest_invalid_total',
      'dashboard_ingest_stale_total',
      'dashboard_ingest_refused_total',
      'dashboard_backend_breaker_state',
      'dashboard_backend_requests_total',
      'dashboard_redis_connected',
      'dashboard_nats_connected',
      'dashboard_history_rows_written_total',
      'dashboard_history_dropped_total',
      'dashboard_history_queue_rows',
      'nodejs_eventloop_lag_p99_seconds',
      'process_resident_memory_bytes',
      'nodejs_heap_size_used_bytes',
    ])
      assert.ok(named.has(name), `the dashboard shows ${name}`);
  });
});

describe('the Prometheus rules', () => {
  const alerts = () => rules.groups.flatMap((group) => group.rules);

  test('parse, with the expected groups and alerts, each with a severity, a summary and a for', () => {
    assert.deepEqual(
      rules.groups.map((group) => group.name),
      ['dashboard-server.availability', 'dashboard-server.health'],
    );
    assert.deepEqual(
      alerts()
        .map((rule) => rule.alert)
        .sort(),
      [
        'BackendBreakerOpen',
        'DashboardDown',
        'EventLoopDelayHigh',
        'HistoryDown',
        'HistoryDroppingRows',
        'LeaderIsolated',
        'NatsDown',
        'NoLeader',
        'RedisDown',
        'SlowConsumerDisconnectsRising',
      ],
    );
    for (const rule of alerts()) {
      assert.equal(typeof rule.expr, 'string', `${rule.alert} expr`);
      assert.match(rule.for ?? '', /^\d+[smh]$/, `${rule.alert} for`);
      assert.ok(['critical', 'warning'].includes(rule.labels?.severity ?? ''), `${rule.alert} severity`);
      assert.ok(rule.annotations?.summary, `${rule.alert} summary`);
      assert.ok(rule.annotations?.description, `${rule.alert} description`);
    }
    const expr = (name: string) => String(alerts().find((rule) => rule.alert === name)?.expr);
    // What each alert is about, in the hub's own terms.
    assert.match(expr('SlowConsumerDisconnectsRising'), /dashboard_disconnects_total\{code="4008"\}/);
    assert.match(expr('BackendBreakerOpen'), /dashboard_backend_breaker_state/);
    assert.match(expr('NatsDown'), /dashboard_nats_enabled == 1/);
    assert.match(expr('HistoryDown'), /dashboard_history_enabled == 1/);
    assert.match(expr('NoLeader'), /sum by \(job\) \(dashboard_leader\{/);
  });

  test('pass promtool check rules and promtool test rules (where promtool is installed)', (t) => {
    const check = spawnSync('promtool', ['check', 'rules', RULES.pathname], { encoding: 'utf8' });
    if ((check.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') {
      t.diagnostic('promtool is not installed (Debian package prometheus): rules not checked by promtool');
      return;
    }
    assert.equal(check.status, 0, check.stdout + check.stderr);
    assert.match(check.stdout, /SUCCESS: 10 rules found/);
    const unit = spawnSync('promtool', ['test', 'rules', RULE_TESTS.pathname], { encoding: 'utf8' });
    assert.equal(unit.status, 0, unit.stdout + unit.stderr);

    // The dashboard's queries are PromQL too: as recording rules (Grafana's variables given values), promtool
    // parses them.
    const recorded = dashboardExprs().map(({ expr }, index) => ({
      record: `dashboard_panel_query_${index}`,
      expr: expr.replaceAll('$__rate_interval', '1m').replaceAll('$instance', '.*'),
    }));
    const dir = mkdtempSync(join(tmpdir(), 'dashboard-queries-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'queries.yml');
    writeFileSync(file, stringify({ groups: [{ name: 'dashboard-queries', rules: recorded }] }));
    const queries = spawnSync('promtool', ['check', 'rules', file], { encoding: 'utf8' });
    assert.equal(queries.status, 0, queries.stdout + queries.stderr);
  });
});

describe('against a hub with the default config', () => {
  let stack: Stack;
  let text: string;

  before(async () => {
    stack = await startStack();
    const response = await fetch(`${stack.running.url}/metrics`);
    assert.equal(response.status, 200);
    text = await response.text();
  });
  after(async () => {
    if (stack) await stopStack(stack);
  });

  test('every metric the dashboard and the rules name is exported', () => {
    const exported = exportedNames(text);
    const missing = [...dashboardExprs(), ...variableExprs(), ...ruleExprs()].flatMap(({ where, expr }) =>
      metricNames(expr)
        .filter((name) => !exported.has(name) && !PROMETHEUS_OWN.has(name))
        .map((name) => `${where}: ${name}`),
    );
    assert.deepEqual(missing, []);
    // The parsing found something to check.
    assert.ok(ruleExprs().every(({ expr }) => metricNames(expr).length > 0));
    assert.ok(dashboardExprs().every(({ expr }) => metricNames(expr).length > 0));
  });

  test('the features that are off export their series at 0, and the slow-consumer disconnects start at 0', () => {
    assert.equal(sample(text, 'dashboard_redis_connected'), 1);
    for (const series of [
      'dashboard_nats_enabled',
      'dashboard_nats_connected',
      'dashboard_nats_reconnects_total',
      'dashboard_history_enabled',
      'dashboard_history_up',
      'dashboard_history_errors_total',
      'dashboard_history_flush_duration_seconds_count',
      'dashboard_disconnects_total{code="4008"}',
      ...HISTORY_KINDS.flatMap((kind) => [
        `dashboard_history_rows_written_total{kind="${kind}"}`,
        `dashboard_history_dropped_total{kind="${kind}"}`,
        `dashboard_history_queue_rows{kind="${kind}"}`,
      ]),
    ])
      assert.equal(sample(text, series), 0, series);
  });
});
