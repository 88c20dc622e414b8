/** The environment overlay: `DASHBOARD_<SECTION>__<KEY>[__<KEY>…]` sets one key of the document. */
import type { TSchema } from '@sinclair/typebox';
import { parse as parseYaml } from 'yaml';
import { ConfigError, schemaAt } from './errors.ts';
import { ConfigFileSchema } from './schema.ts';

/**
 * Parses an environment override as a YAML scalar or flow list, so `8090`, `true`, `[a, b]` keep their types;
 * where the key takes a string, a scalar is kept as written (a secret like `0123…` must not become a number).
 */
function parseEnvValue(name: string, text: string, schema: TSchema | undefined): unknown {
  const takesString =
    schema?.type === 'string' || (schema?.anyOf as TSchema[] | undefined)?.some((s) => s.type === 'string');
  if (takesString && !/^\s*[[{]/.test(text)) return text;
  try {
    return parseYaml(text);
  } catch {
    throw new ConfigError(`config: ${name} is not a valid value: ${JSON.stringify(text)}`);
  }
}

/**
 * Writes every `DASHBOARD_<SECTION>__<KEY>` variable of `env` into `document` (in place), creating sections it
 * lacks. Returns which variable set which key (`server.port` → `DASHBOARD_SERVER__PORT`), for error messages.
 */
export function applyEnv(document: Record<string, unknown>, env: NodeJS.ProcessEnv): Map<string, string> {
  const sources = new Map<string, string>();
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith('DASHBOARD_') || !name.includes('__') || raw === undefined) continue;
    const path = name
      .slice('DASHBOARD_'.length)
      .split('__')
      .map((part) => part.toLowerCase());
    if (path.some((part) => part === '')) throw new ConfigError(`config: ${name} does not name a key`);
    let target = document;
    for (const section of path.slice(0, -1)) {
      const next = target[section];
      if (next === undefined || next === null) target[section] = {};
      else if (typeof next !== 'object' || Array.isArray(next)) {
        throw new ConfigError(`config: ${name} sets a key inside ${section}, which is not a section`);
      }
      target = target[section] as Record<string, unknown>;
    }
    target[path.at(-1)!] = parseEnvValue(name, raw, schemaAt(ConfigFileSchema, path));
    sources.set(path.join('.'), name);
  }
  return sources;
}
