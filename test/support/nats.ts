/**
 * The NATS server (with JetStream) that tests use: `TEST_NATS_URL`, else the local one. Tests
 * never read NATS_URL: that is the services' own setting, and a developer's shell may point it at
 * a NATS the tests must not write their streams to. Tests hand the URL to the services they start
 * as NATS_URL explicitly.
 */
export const testNatsUrl = process.env.TEST_NATS_URL ?? 'nats://127.0.0.1:4222';
