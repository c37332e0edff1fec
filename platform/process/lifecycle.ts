/**
 * How a service process stops: on SIGTERM or SIGINT, and when the supervisor that started it
 * (`npm start`) goes away, so no service outlives the command that started it.
 */
import { createLogger, errorFields } from '../logging/logger.ts';
import { shutdownTracing } from '../tracing/tracing.ts';

export function stopOnSignals(component: string, stop: () => Promise<void>): void {
  const log = createLogger(component);
  let stopping = false;
  const shutdown = async (reason: string) => {
    if (stopping) return;
    stopping = true;
    log.info('stopping', { reason });
    await stop().catch((error: unknown) => log.error('stop failed', errorFields(error)));
    // Spans still batched are exported before the process ends (nothing to do while tracing is off).
    await shutdownTracing();
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
  // Only when started with an IPC channel, i.e. by the supervisor.
  if (process.connected) process.on('disconnect', () => void shutdown('supervisor gone'));
}
