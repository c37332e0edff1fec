import { describe, expect, it } from 'vitest';
import { KeyedLock } from '../platform/async/keyed-lock.ts';

const tick = () => new Promise((resolve) => setTimeout(resolve, 5));

describe('a keyed lock', () => {
  it('runs the work of one key one at a time, in the order it was asked for', async () => {
    const lock = new KeyedLock();
    const log: string[] = [];
    const job = (name: string) => lock.run('order-1', async () => {
      log.push(`${name} starts`);
      await tick();
      log.push(`${name} ends`);
    });
    await Promise.all([job('authorize'), job('void'), job('capture')]);
    expect(log).toEqual(['authorize starts', 'authorize ends', 'void starts', 'void ends', 'capture starts', 'capture ends']);
  });

  it('runs the work of different keys at the same time, and forgets keys with nothing left to run', async () => {
    const lock = new KeyedLock();
    let running = 0;
    let most = 0;
    await Promise.all(['a', 'b', 'c'].map((key) => lock.run(key, async () => {
      most = Math.max(most, ++running);
      await tick();
      running -= 1;
    })));
    expect(most).toBe(3);
    expect(lock.size).toBe(0);
  });

  it('lets the next work of a key run after one that failed', async () => {
    const lock = new KeyedLock();
    await expect(lock.run('k', async () => { throw new Error('provider down'); })).rejects.toThrow('provider down');
    expect(await lock.run('k', async () => 'ran')).toBe('ran');
  });
});
