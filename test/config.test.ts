/** Configuration derived from the environment: pure functions, no servers. */
import { describe, expect, it } from 'vitest';
import { eventBusDatabaseFromContexts } from '../platform/config.ts';
import { contextNames, type ContextName } from '../platform/contexts.ts';

/** Every context's own URL, as `<CONTEXT>_DATABASE_URL` would give them. */
const ownUrls = (url: (context: ContextName) => string) => Object.fromEntries(contextNames.map((context) => [context, url(context)])) as Record<ContextName, string>;

describe('the event-bus database when only the contexts have their own database URLs', () => {
  it('is `<prefix>_events` on the server of the first context, keeping its login and parameters', () => {
    const urls = ownUrls((context) => `postgres://shop:secret@db.internal:6543/shop_${context}?sslmode=require`);

    expect(eventBusDatabaseFromContexts(urls)).toEqual({ url: 'postgres://shop:secret@db.internal:6543/shop_events?sslmode=require', context: 'accounts' });
  });

  it('is on the first context’s server when the contexts live on different servers', () => {
    const urls = ownUrls((context) => `postgres://postgres@${context}.db:5432/commerce_${context}`);

    expect(eventBusDatabaseFromContexts(urls)).toEqual({ url: 'postgres://postgres@accounts.db:5432/commerce_events', context: 'accounts' });
  });

  it('is `commerce_events` when the first context’s database is not named `<prefix>_<context>`', () => {
    expect(eventBusDatabaseFromContexts(ownUrls(() => 'postgres://h/users'))?.url).toBe('postgres://h/commerce_events');
    expect(eventBusDatabaseFromContexts(ownUrls((context) => `postgres://h/${context}`))?.url).toBe('postgres://h/commerce_events');
  });

  it('comes from the first context that has a URL, in the platform’s order of contexts', () => {
    const { accounts: _accounts, ...withoutAccounts } = ownUrls((context) => `postgres://h/${context === 'catalog' ? 'cat' : 'other'}_${context}`);

    expect(eventBusDatabaseFromContexts(withoutAccounts)).toEqual({ url: 'postgres://h/cat_events', context: 'catalog' });
  });

  it('is undefined when no context has a URL', () => {
    expect(eventBusDatabaseFromContexts({})).toBeUndefined();
  });
});
