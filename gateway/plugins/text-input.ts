/**
 * Refuses operations that carry text no subgraph can store as sent — a NUL character or a lone
 * UTF-16 surrogate, in an argument or a variable — with BAD_USER_INPUT naming the argument or
 * variable (`extensions.field`), on every transport, before planning. Without it a NUL reaches
 * PostgreSQL and comes back as an internal error. The rules live in platform/graphql/text-input.ts,
 * shared with the subgraphs' own check.
 */
import { ErrorCode } from '../../platform/errors/index.ts';
import { findInvalidText, invalidTextMessage } from '../../platform/graphql/text-input.ts';
import type { GatewayPlugin } from '../pipeline/plugin.ts';
import { GatewayRefusal } from '../pipeline/refusal.ts';

export function textInput(): GatewayPlugin {
  return {
    name: 'text-input',
    onOperation({ document, variables }) {
      const invalid = findInvalidText(document, variables);
      if (invalid) throw new GatewayRefusal(ErrorCode.BAD_USER_INPUT, invalidTextMessage(invalid), { status: 400, details: { field: invalid.field } });
    },
  };
}
