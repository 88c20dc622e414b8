/**
 * Loading the configuration: read the YAML file, overlay the environment, fill defaults, validate against the
 * schema, decode (durations to ms, sizes to bytes), gather the JWT keys, check across keys.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { TSchema } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { parse as parseYaml } from 'yaml';
import { checkConfig } from './checks.ts';
import { applyEnv } from './env.ts';
import { ConfigError, firstError } from './errors.ts';
import { withJwtKeys } from './jwt-keys.ts';
import { type Config, ConfigFileSchema } from './schema.ts';

const checker = TypeCompiler.Compile(ConfigFileSchema);

/** Fills defaults in place, walking the schema so nested sections get theirs too. */
function applyDefaults(schema: TSchema, value: unknown): unknown {
  if (value === undefined && 'default' in schema) value = structuredClone(schema.default);
  if (schema.type === 'object' && value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const record = value as Record<string, unknown>;
    for (const [key, child] of Object.entries((schema.properties ?? {}) as Record<string, TSchema>)) {
      const filled = applyDefaults(child, record[key]);
      if (filled !== undefined) record[key] = filled;
    }
  }
  return value;
}

export interface LoadOptions {
  /** Path of the YAML file; the file must exist. */
  path: string;
  /** Environment to read DASHBOARD_<SECTION>__<KEY> overrides from. */
  env?: NodeJS.ProcessEnv;
}

/** Reads, overrides, validates and normalizes the configuration. Throws ConfigError with a one-line message. */
export function loadConfig({ path, env = {} }: LoadOptions): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(`config: cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? error}`);
  }
  let document: unknown;
  try {
    document = parseYaml(text) ?? {};
  } catch (error) {
    const firstLine = String((error as Error).message).split('\n')[0];
    throw new ConfigError(`config: ${path} is not valid YAML: ${firstLine}`);
  }
  if (typeof document !== 'object' || Array.isArray(document)) {
    throw new ConfigError(`config: ${path} must hold a mapping of sections, got ${JSON.stringify(document)}`);
  }
  return configFromDocument(document as Record<string, unknown>, env, path, dirname(resolve(path)));
}

/**
 * The configuration from a parsed document (changed in place: overrides and defaults). `origin` names the
 * document in messages; `baseDir` is where relative key files are read from.
 */
export function configFromDocument(
  document: Record<string, unknown>,
  env: NodeJS.ProcessEnv = {},
  origin = 'the config file',
  baseDir = process.cwd(),
): Config {
  const sources = applyEnv(document, env);
  for (const [key, value] of Object.entries(document)) {
    if (value === null)
      throw new ConfigError(`config: ${key} is empty in ${origin}; remove it or give it keys`);
  }
  applyDefaults(ConfigFileSchema, document);
  const error = firstError(checker, document, sources);
  if (error) throw error;
  const config = withJwtKeys(checker.Decode(document), baseDir);
  checkConfig(config, sources);
  return config;
}
