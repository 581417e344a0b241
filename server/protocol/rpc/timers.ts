// Time is a parameter (DESIGN.md, "Principles"): the RPC client and server take their
// timers from the caller, so a simulator can drive deadlines. The shape matches the
// Timers of server/cluster/owner.ts, so one object serves both.

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** The global timers (kept referenced: a pending deadline is work the process still owes). */
export const globalTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};
