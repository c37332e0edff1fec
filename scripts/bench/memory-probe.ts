/**
 * Preloaded (`node --expose-gc --import ./scripts/bench/memory-probe.ts …`) into a service the
 * subscriptions benchmark starts as a child process (the gateway, the orders subgraph), so the
 * benchmark can read that process's JavaScript heap, not only its RSS from /proc: on the IPC
 * message `{ memoryProbe: id }` it collects garbage (twice: the second pass frees what the
 * first one's finalizers released) and answers with `process.memoryUsage()`. Does nothing
 * without an IPC channel. The service itself is not changed.
 */
if (process.send) {
  process.on('message', (message: { memoryProbe?: number }) => {
    if (typeof message?.memoryProbe !== 'number') return;
    const gc = (globalThis as { gc?: () => void }).gc;
    gc?.();
    gc?.();
    process.send!({ memoryProbe: message.memoryProbe, collected: Boolean(gc), usage: process.memoryUsage() });
  });
}
