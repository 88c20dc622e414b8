/**
 * The configuration's error type and its one-line messages: what a key expected, and the first schema error of
 * a document. No knowledge of the config's keys: the schema is passed in.
 */
import type { TSchema } from '@sinclair/typebox';
import type { TypeCheck } from '@sinclair/typebox/compiler';
import { redactUrlCredentials } from '../access.ts';

/** A configuration problem: the message is one line naming the key, the value and what was expected. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** What a schema expects, in words: `an integer from 0 to 65535`, `one of debug, info`, a duration's description. */
export function describeExpected(schema: TSchema): string {
  // A duration (schema.ts) says what it expects in its description.
  if (schema.type === 'string' && schema.description) return schema.description;
  if (schema.anyOf) {
    const literals = (schema.anyOf as TSchema[]).filter((s) => 'const' in s).map((s) => s.const);
    if (literals.length === schema.anyOf.length) return `one of ${literals.join(', ')}`;
    if (schema.description) return schema.description;
  }
  if (schema.type === 'integer' || schema.type === 'number') {
    const range =
      schema.minimum !== undefined && schema.maximum !== undefined
        ? ` from ${schema.minimum} to ${schema.maximum}`
        : schema.minimum !== undefined
          ? ` of at least ${schema.minimum}`
          : '';
    return `${schema.type === 'integer' ? 'an integer' : 'a number'}${range}`;
  }
  if (schema.type === 'string' && schema.pattern) return `a string matching ${schema.pattern}`;
  if (schema.type === 'array')
    return `a list${schema.minItems ? ` of at least ${schema.minItems} item(s)` : ''}`;
  if (schema.type === 'object') return 'a section (mapping of keys)';
  return `a ${schema.type}`;
}

/** The schema of the key at `path` (section, key, list index…) under `root`, or undefined for an unknown key. */
export function schemaAt(root: TSchema, path: string[]): TSchema | undefined {
  let schema: TSchema | undefined = root;
  for (const key of path) {
    if (!schema) return undefined;
    if (schema.type === 'object') {
      // A record (auth.topic_roles) has one schema for every key.
      const record = schema.patternProperties as Record<string, TSchema> | undefined;
      schema =
        (schema.properties as Record<string, TSchema> | undefined)?.[key] ?? Object.values(record ?? {})[0];
    } else if (schema.type === 'array') schema = schema.items as TSchema;
    else return undefined;
  }
  return schema;
}

function valueAt(root: unknown, path: string[]): unknown {
  let value = root;
  for (const key of path) value = (value as Record<string, unknown> | undefined)?.[key];
  return value;
}

/**
 * The first schema error of `document` as a ConfigError, or undefined when it is valid. `sources` maps a key
 * (`server.port`) to the environment variable that set it, so the message can name it.
 */
export function firstError(
  checker: TypeCheck<TSchema>,
  document: unknown,
  sources: ReadonlyMap<string, string>,
): ConfigError | undefined {
  const error = checker.Errors(document).First();
  if (!error) return undefined;
  const path = error.path.split('/').filter(Boolean);
  const schema = schemaAt(checker.Schema(), path);
  // An unknown key shows as an error on the key itself, for which the schema has no entry.
  const keyPath = path.filter((segment) => !/^[0-9]+$/.test(segment)).join('.');
  const source = sources.get(keyPath) ?? sources.get(path.slice(0, 2).join('.'));
  const from = source ? ` (from ${source})` : '';
  if (!schema) return new ConfigError(`config: unknown key ${keyPath || '(root)'}${from}`);
  const shown = path.length === 0 ? 'the document' : path.join('.');
  const got = shownValue(path, valueAt(document, path));
  return new ConfigError(`config: ${shown} must be ${describeExpected(schema)}, got ${got}${from}`);
}

/** Keys whose value never reaches an error line (it is read from logs and terminals). */
const SECRET_KEY = /secret|password|api_key|token/;

/** A value as an error line shows it: a secret as `"***"`, a URL's credentials (`//user:password@`) masked. */
function shownValue(path: string[], value: unknown): string {
  if (value === undefined) return 'nothing';
  if (SECRET_KEY.test(path.at(-1) ?? '') && typeof value === 'string') return '"***"';
  return redactUrlCredentials(JSON.stringify(value));
}

/** ` (from DASHBOARD_…)` when an environment variable set `key`, else ''. */
export function sourceNote(sources: ReadonlyMap<string, string>, key: string): string {
  const name = sources.get(key);
  return name === undefined ? '' : ` (from ${name})`;
}
