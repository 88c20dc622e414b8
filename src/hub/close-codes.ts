/** Close codes the hub sends (see docs/protocol.md). 4000–4499: reconnect; 4500–4999: do not. */
export const CloseCode = {
  GOING_AWAY: 1001,
  INTERNAL_ERROR: 1011,
  TOKEN_EXPIRED: 4001,
  SLOW_CONSUMER: 4008,
  RATE_LIMITED: 4029,
} as const;
