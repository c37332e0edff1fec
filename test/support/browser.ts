/**
 * Headless Chromium for browser tests: Debian's chromium driven by playwright-core (never
 * `playwright install`, which downloads a browser). Nothing is skipped: without chromium the test
 * fails and says how to install it. Screenshots go to test-results/screenshots/, kept after the
 * run (CI can archive the folder).
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page, type Route } from 'playwright-core';

/** Where the browser is, unless CHROMIUM_PATH says otherwise (a developer's own build). */
export const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export const screenshotDir = join(import.meta.dirname, '..', '..', 'test-results', 'screenshots');

export async function launchBrowser(): Promise<Browser> {
  if (!existsSync(chromiumPath)) {
    throw new Error(
      `Chromium is not installed at ${chromiumPath}: browser tests need it. ` +
        'Install it with `apt-get install -y --no-install-recommends chromium` (or point CHROMIUM_PATH at one).',
    );
  }
  return chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    // --no-sandbox: CI runs as root in a container, where Chromium's sandbox cannot start.
    // --disable-background-networking: no update checks or field trials reaching out on their own.
    args: ['--no-sandbox', '--disable-background-networking', '--disable-dev-shm-usage'],
  });
}

/** Whether a URL points at this machine (what tests let through when they cut the network). */
export function isLocal(url: string): boolean {
  const { protocol, hostname } = new URL(url);
  if (protocol === 'data:' || protocol === 'blob:' || protocol === 'about:') return true;
  return hostname === '127.0.0.1' || hostname === 'localhost' || hostname === '[::1]';
}

/**
 * How a test's browser sees the internet: `refused` (offline: every request to elsewhere fails at
 * once) or `dropped` (a firewall that drops packets: requests to elsewhere are never answered).
 */
export type OutboundNetwork = 'refused' | 'dropped';

/**
 * A browser context whose requests to anywhere but this machine are refused or left hanging.
 * Returns the URLs that were cut, so a test can show it was the network that failed them.
 */
export async function contextWithoutInternet(browser: Browser, outbound: OutboundNetwork): Promise<{ context: BrowserContext; cut: string[] }> {
  const context = await browser.newContext();
  const cut: string[] = [];
  const hanging: Route[] = [];
  await context.route(
    (url) => !isLocal(url.href),
    async (route) => {
      cut.push(route.request().url());
      if (outbound === 'refused') await route.abort('internetdisconnected');
      else hanging.push(route); // never answered, as a dropped SYN: the browser waits until the context closes
    },
  );
  return { context, cut };
}

/** Saves a full-page screenshot under test-results/screenshots/<name>.png and returns its path. */
export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(screenshotDir, { recursive: true });
  const path = join(screenshotDir, `${name.replace(/[^a-z0-9-]+/gi, '-')}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

/** Collects what the page logs as errors and its uncaught exceptions, for a test's failure message. */
export function pageErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(`uncaught: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(`console: ${message.text()}`);
  });
  return errors;
}
