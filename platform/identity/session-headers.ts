/**
 * The headers the gateway and accounts exchange about sessions (docs/decisions/0022-sessions.md):
 * one definition for both ends of the wire.
 */

/** Client → gateway: `cookie` asks for a web (cookie) session. */
export const clientSessionHeader = 'x-commerce-session';
/** Gateway → accounts: `cookie` when the client asked for a web session (set only on accounts' fetches). */
export const sessionModeHeader = 'x-commerce-session-mode';
/** Accounts → gateway: a web session's token, or `sessionEnded`; the gateway makes it the cookie and never forwards it. */
export const sessionGrantHeader = 'x-commerce-session-grant';
/** The grant that tells the gateway to clear the cookie. */
export const sessionEnded = 'ended';
/** Gateway → every subgraph: the client's address (trusted because the request carries the gateway's signature). */
export const clientAddressHeader = 'x-commerce-client-address';
