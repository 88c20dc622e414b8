/**
 * The one derived section of the config: `auth.jwt.secrets` and `auth.jwt.public_keys`, gathered from the inline
 * keys and the files they name (relative to the config file's folder).
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { ConfigError } from './errors.ts';
import type { Config, ConfigFile } from './schema.ts';

function list(value: string | string[] | undefined): string[] {
  return value === undefined ? [] : Array.isArray(value) ? value : [value];
}

/** Reads secret or key files; a missing or empty file names its key. */
function readKeyFiles(key: string, value: string | string[] | undefined, baseDir: string): string[] {
  return list(value).map((path) => {
    const full = resolve(baseDir, path);
    let text: string;
    try {
      text = readFileSync(full, 'utf8').trim();
    } catch (error) {
      throw new ConfigError(
        `config: ${key}: cannot read ${full}: ${(error as NodeJS.ErrnoException).code ?? error}`,
      );
    }
    if (text === '') throw new ConfigError(`config: ${key}: ${full} is empty`);
    return text;
  });
}

/** The decoded file with `auth.jwt`'s `secret(_file)` and `public_key(_file)` replaced by the keys they give. */
export function withJwtKeys(file: ConfigFile, baseDir: string): Config {
  const { secret, secret_file, public_key, public_key_file, ...jwt } = file.auth.jwt;
  return {
    ...file,
    auth: {
      ...file.auth,
      jwt: {
        ...jwt,
        // Present even when unset, as the service has always seen them.
        issuer: jwt.issuer,
        audience: jwt.audience,
        secrets: [...list(secret), ...readKeyFiles('auth.jwt.secret_file', secret_file, baseDir)],
        public_keys: [
          ...list(public_key),
          ...readKeyFiles('auth.jwt.public_key_file', public_key_file, baseDir),
        ],
      },
    },
  };
}
