/**
 * The life of one Connect stream on the hub, written as data.
 *
 *   awaiting_hello --hello accepted--> active --stream ends / refused / replaced / drained--> closed
 *   awaiting_hello --refused / timeout / stream ends--> closed
 */
export type SessionState = 'awaiting_hello' | 'active' | 'closed';

export const SESSION_TRANSITIONS: Record<SessionState, readonly SessionState[]> = {
  awaiting_hello: ['active', 'closed'],
  active: ['closed'],
  closed: [],
};

export function canTransition(from: SessionState, to: SessionState): boolean {
  return SESSION_TRANSITIONS[from].includes(to);
}
