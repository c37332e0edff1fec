import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deterministicUuid } from '../platform/ids.ts';
import { demoUsers } from '../scripts/demo/data.ts';
import { seedDemoData } from '../scripts/demo/seed.ts';
import { startGateway } from '../gateway/server.ts';
import { contextWithoutInternet, isLocal, launchBrowser, pageErrors, screenshot, type OutboundNetwork } from './support/browser.ts';
import { placeOrder } from './support/orders.ts';
import { gatewayOptionsFor, startStack, type Stack } from './support/stack.ts';
import { waitFor } from './support/wait.ts';

/** The session cookie as the gateway names it on http://127.0.0.1 (decision 0022). */
const sessionCookie = 'commerce-session';

/** The text GraphiQL shows in its result pane (Monaco renders it as lines of the result editor). */
async function resultText(page: Page): Promise<string> {
  return (await page.locator('.graphiql-response').innerText()).replace(/\s+/g, ' ');
}

async function runInExplorer(page: Page): Promise<void> {
  await page.locator('.graphiql-execute-button').click();
}

describe('the development explorer when Apollo Sandbox is out of reach', () => {
  let stack: Stack;
  let browser: Browser;
  const customerId = deterministicUuid('customer', demoUsers.customer.email);
  let token: string;

  beforeAll(async () => {
    stack = await startStack({ eventBus: 'postgres' });
    await seedDemoData(stack.databaseUrls);
    token = await stack.tokenFor({ customerId });
    browser = await launchBrowser();
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    await stack?.stop();
  });

  const cases: [OutboundNetwork, string][] = [
    ['refused', 'with no internet'],
    ['dropped', 'behind a firewall that drops packets'],
  ];
  for (const [outbound, where] of cases) {
    it(`opens the local explorer from GET /graphql ${where}, and runs a query with the session cookie`, async () => {
      const { context, cut } = await contextWithoutInternet(browser, outbound);
      try {
        const gateway = new URL(stack.gatewayUrl);
        await context.addCookies([{ name: sessionCookie, value: token, url: gateway.origin }]);
        const page = await context.newPage();
        const errors = pageErrors(page);
        const query = 'query Me { me { email } products(first: 2) { totalCount } }';
        await page.goto(`${stack.gatewayUrl}?query=${encodeURIComponent(query)}`);
        await page.waitForURL(/\/graphql\/explorer/, { timeout: 15_000 });
        // It was the network that failed Sandbox's script, and nothing else was fetched from outside.
        expect(cut.some((url) => url.startsWith('https://embeddable-sandbox.cdn.apollographql.com/'))).toBe(true);
        await page.locator('.graphiql-execute-button').waitFor({ timeout: 20_000 });
        await runInExplorer(page);
        await waitFor('the query result in the explorer', async () => ((await resultText(page)).includes(demoUsers.customer.email) ? true : undefined), 20_000);
        expect(await resultText(page)).toContain('"totalCount"');
        await screenshot(page, `explorer-offline-${outbound}-query`);
        expect(cut.every((url) => !isLocal(url))).toBe(true);
        expect(errors.filter((error) => /Content Security Policy/i.test(error))).toEqual([]);
      } finally {
        await context.close();
      }
    }, 60_000);
  }

  it('sends the headers written in its Headers tab', async () => {
    const { context } = await contextWithoutInternet(browser, 'refused');
    try {
      const page = await context.newPage();
      const query = 'query Me { me { email } }';
      await page.goto(`${new URL(stack.gatewayUrl).origin}/graphql/explorer?query=${encodeURIComponent(query)}`);
      await page.locator('.graphiql-execute-button').waitFor({ timeout: 20_000 });
      await page.locator('.graphiql-editor-tools button[data-name=headers]').click();
      await page.locator('.graphiql-editor-tool .graphiql-editor').filter({ visible: true }).click();
      await page.keyboard.press('ControlOrMeta+A');
      await page.keyboard.insertText(JSON.stringify({ authorization: `Bearer ${token}` }));
      await runInExplorer(page);
      await waitFor('the signed-in answer', async () => ((await resultText(page)).includes(demoUsers.customer.email) ? true : undefined), 20_000);
      await screenshot(page, 'explorer-headers');
    } finally {
      await context.close();
    }
  }, 60_000);

  it('runs a subscription over graphql-ws with the session cookie and shows its events as they arrive', async () => {
    const { context } = await contextWithoutInternet(browser, 'refused');
    try {
      const gateway = new URL(stack.gatewayUrl);
      await context.addCookies([{ name: sessionCookie, value: token, url: gateway.origin }]);
      const page = await context.newPage();
      const query = 'subscription Mine { myOrderUpdates { id status } }';
      await page.goto(`${gateway.origin}/graphql/explorer?query=${encodeURIComponent(query)}`);
      await page.locator('.graphiql-execute-button').waitFor({ timeout: 20_000 });
      const before = stack.gateway.subscriptionStats().clients;
      await runInExplorer(page);
      await waitFor('the explorer subscribed', () => (stack.gateway.subscriptionStats().clients > before ? true : undefined));
      const orderId = await placeOrder(stack.gatewayUrl, token);
      await waitFor('the order confirmed, in the explorer', async () => {
        const text = await resultText(page);
        return text.includes(orderId) && text.includes('CONFIRMED') ? true : undefined;
      }, 30_000);
      await screenshot(page, 'explorer-offline-subscription');
    } finally {
      await context.close();
    }
  }, 60_000);

  it('embeds Apollo Sandbox when its script loads, with the gateway as endpoint', async () => {
    const context = await browser.newContext();
    try {
      // Sandbox's CDN answered by a stand-in: what the landing page does with it is the subject.
      await context.route('https://embeddable-sandbox.cdn.apollographql.com/**', (route) =>
        route.fulfill({
          contentType: 'text/javascript',
          body: 'window.EmbeddedSandbox = function (config) { window.sandboxConfig = config; document.querySelector(config.target).textContent = "Sandbox stand-in"; };',
        }),
      );
      await context.route((url) => !isLocal(url.href) && !url.href.startsWith('https://embeddable-sandbox.cdn.apollographql.com/'), (route) => route.abort());
      const page = await context.newPage();
      await page.goto(stack.gatewayUrl);
      await page.getByText('Sandbox stand-in').waitFor();
      expect(new URL(page.url()).pathname).toBe('/graphql');
      const config = (await page.evaluate('window.sandboxConfig')) as { initialEndpoint: string; runTelemetry: boolean };
      expect(config.initialEndpoint).toBe(stack.gatewayUrl);
      expect(config.runTelemetry).toBe(false);
      expect(await page.locator('#local-explorer').getAttribute('href')).toBe('/graphql/explorer');
    } finally {
      await context.close();
    }
  });

  it('serves the explorer with a Content-Security-Policy of its own origin only, and its bundle as immutable', async () => {
    const response = await fetch(new URL('/graphql/explorer', stack.gatewayUrl));
    expect(response.status).toBe(200);
    const csp = response.headers.get('content-security-policy')!;
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toMatch(/https?:\/\//);
    const html = await response.text();
    const bundle = /src="([^"]+yoga-graphiql\.umd\.js)"/.exec(html)![1]!;
    const asset = await fetch(new URL(bundle, stack.gatewayUrl));
    expect(asset.status).toBe(200);
    expect(asset.headers.get('cache-control')).toContain('immutable');
    await asset.arrayBuffer();
  });

  it('serves no explorer in production', async () => {
    const production = await startGateway(gatewayOptionsFor(stack, { production: true }));
    try {
      const page = await fetch(new URL('/graphql/explorer', production.url));
      expect(page.status).toBe(404);
      const landing = await fetch(production.url, { headers: { accept: 'text/html' } });
      expect(await landing.text()).not.toMatch(/sandbox|explorer/i);
    } finally {
      await production.stop();
    }
  });
});
