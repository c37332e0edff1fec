/** Names of the databases a test run creates; all start with the run's prefix. */
import { randomBytes } from 'node:crypto';

export const templateDatabaseName = (runPrefix: string, context: string) => `${runPrefix}_tpl_${context}`;

export const freshDatabaseName = (runPrefix: string, context: string) => `${runPrefix}_${context}_${randomBytes(4).toString('hex')}`;
