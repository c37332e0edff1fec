import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { build, preview, type PreviewServer } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../gateway/server.ts';
import { deterministicUuid } from '../platform/ids.ts';
import { demoUsers } from '../scripts/demo/data.ts';
import { seedDemoData } from '../scripts/demo/seed.ts';
import { contextWithoutInternet, launchBrowser, pageErrors, screenshot } from './support/browser.ts';
import { advanceShipment, inStockProducts } from './support/orders.ts';
import { freePort } from './support/processes.ts';
import { gatewayOptionsFor, startStack, type Stack } from './support/stack.ts';
import { waitFor } from './support/wait.ts';

const storefrontConfig = join(import.meta.dirname, '..', 'clients', 'storefront', 'vite.config.ts');

/** Builds the storefront for this gateway and serves the build on its own origin (`vite preview`). */
async function serveStorefront(gatewayUrl: string, port: number, outDir: string): Promise<PreviewServer> {
  const quiet = { configFile: storefrontConfig, logLevel: 'warn' as const };
  await build({ ...quiet, define: { __GATEWAY_URL__: JSON.stringify(gatewayUrl) }, build: { outDir, emptyOutDir: true } });
  return preview({ ...quiet, build: { outDir }, preview: { host: '127.0.0.1', port, strictPort: true } });
}

describe('the storefront, in a browser on its own origin, against the platform', () => {
  let stack: Stack;
  let gateway: RunningGateway;
  let storefront: PreviewServer;
  let storefrontOrigin: string;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let errors: string[];
  const outDir = mkdtempSync(join(tmpdir(), 'storefront-'));
  const customer = demoUsers.customer;

  beforeAll(async () => {
    stack = await startStack({ eventBus: 'postgres' });
    await seedDemoData(stack.databaseUrls);
    const port = await freePort();
    storefrontOrigin = `http://127.0.0.1:${port}`;
    // The gateway the storefront talks to lists the storefront's origin (GATEWAY_CORS_ORIGINS).
    gateway = await startGateway(gatewayOptionsFor(stack, { corsOrigins: [storefrontOrigin] }));
    storefront = await serveStorefront(gateway.url, port, outDir);
    browser = await launchBrowser();
    // Everything it needs is on this machine.
    ({ context } = await contextWithoutInternet(browser, 'refused'));
    page = await context.newPage();
    errors = pageErrors(page);
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    await storefront?.close();
    await gateway?.stop();
    await stack?.stop();
    rmSync(outDir, { recursive: true, force: true });
  });

  it('shows the catalog to a visitor who is not signed in', async () => {
    await page.goto(storefrontOrigin);
    await page.locator('.product').first().waitFor();
    expect(await page.locator('.product').count()).toBeGreaterThan(0);
    await expect.poll(() => page.locator('#sign-in').isVisible()).toBe(true);
  });

  it('signs in with a cookie session the page cannot read', async () => {
    await page.locator('#sign-in input[name=email]').fill(customer.email);
    await page.locator('#sign-in input[name=password]').fill(customer.password);
    await page.locator('#sign-in button[type=submit]').click();
    await page.locator('#signed-in').waitFor();
    expect(await page.locator('#signed-in').textContent()).toContain(customer.name);
    const cookie = (await context.cookies(gateway.url)).find((c) => c.name === 'commerce-session');
    expect(cookie?.httpOnly).toBe(true);
    expect(cookie?.sameSite).toBe('Lax');
    expect(await page.evaluate('document.cookie')).not.toContain('commerce-session');
  });

  it('places an order and shows its status change live, through the subscription', async () => {
    const product = inStockProducts.find((p) => p.stock >= 20)!;
    // The product may be on a later page of the catalog.
    const add = page.locator(`button[data-product-id="${product.id}"]`);
    await waitFor('the product in the list', async () => {
      if (await add.count()) return true;
      await page.locator('#more-products').click();
      return undefined;
    });
    await add.click();
    await page.locator('#checkout').waitFor();
    await page.locator('#checkout input[name=line1]').fill('1 Main Street');
    await page.locator('#checkout input[name=city]').fill('Berlin');
    await page.locator('#checkout input[name=postalCode]').fill('10115');
    await page.locator('#checkout button[type=submit]').click();

    const status = page.locator('#order-status');
    await status.waitFor();
    await expect.poll(() => status.getAttribute('data-status'), { timeout: 30_000 }).toBe('CONFIRMED');
    const orderId = (await page.locator('#order-id').textContent())!;
    await screenshot(page, 'storefront-order-confirmed');

    // A change the page cannot know of but through its subscription: the carrier takes the parcel.
    const admin = await stack.tokenFor({ customerId: deterministicUuid('customer', demoUsers.admin.email), roles: ['customer', 'admin'] });
    await advanceShipment(gateway.url, admin, orderId, 'DISPATCHED');
    await expect.poll(() => status.getAttribute('data-status'), { timeout: 30_000 }).toBe('SHIPPED');
    expect(await page.locator('#order-history li').allTextContents()).toEqual(['PENDING', 'CONFIRMED', 'SHIPPED']);
    await screenshot(page, 'storefront-order-shipped');
  }, 90_000);

  it('signs out: the cookie is cleared and the page offers to sign in again', async () => {
    await page.locator('#sign-out').click();
    await page.locator('#sign-in').waitFor();
    const cookie = (await context.cookies(gateway.url)).find((c) => c.name === 'commerce-session');
    expect(cookie).toBeUndefined();
    expect(errors.filter((error) => !/Failed to load resource/.test(error))).toEqual([]);
  });
});
