import { existsSync } from 'node:fs';
import { type Browser, chromium } from 'playwright-core';

/** Debian's `chromium` package: playwright's own browser download does not work on these machines. */
export const CHROMIUM = '/usr/bin/chromium';

/** Why no browser could start, with the fix (the browser tests fail with it, never skip). */
export class ChromiumMissing extends Error {
  constructor() {
    super(`${CHROMIUM} is missing: apt-get install -y chromium (the Debian package; .ci/run installs it)`);
    this.name = 'ChromiumMissing';
  }
}

/** Headless Chromium driven by playwright-core (the admin page's test and screenshot). */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new ChromiumMissing();
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--no-first-run',
    ],
  });
}
