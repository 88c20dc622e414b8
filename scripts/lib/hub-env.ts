/** Where the hub runs as a process of its own for a tool (the soak, the benchmark): its address, Redis, secret. */
export interface HubProcessOptions {
  port: number;
  redisUrl: string;
  /** The file holding the HS256 secret the tool signs its clients' tokens with. */
  secretFile: string;
}

/**
 * The environment of a hub started by a tool (src/server.ts, or a release's src/server.js): this process's
 * environment with the hub on 127.0.0.1:`port`, against `redisUrl`, auth on with `secretFile`, logs at warn;
 * `overrides` adds or replaces DASHBOARD_* keys.
 */
export function hubEnv(
  { port, redisUrl, secretFile }: HubProcessOptions,
  overrides: Record<string, string> = {},
): NodeJS.ProcessEnv {
  return {
    ...process.env,
    DASHBOARD_SERVER__HOST: '127.0.0.1',
    DASHBOARD_SERVER__PORT: String(port),
    DASHBOARD_SERVER__LOG_LEVEL: 'warn',
    DASHBOARD_REDIS__URL: redisUrl,
    DASHBOARD_AUTH__JWT__SECRET_FILE: secretFile,
    ...overrides,
  };
}
