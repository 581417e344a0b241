// Time is a parameter: modules take a Clock instead of calling Date.now(), so tests
// (and, later, the simulator) can drive time themselves.

export interface Clock {
  /** Wall-clock milliseconds since the Unix epoch. */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/** A clock that moves only when told: for unit tests. */
export class ManualClock implements Clock {
  constructor(private ms: number = 1_700_000_000_000) {}
  now(): number {
    return this.ms;
  }
  advance(ms: number): void {
    this.ms += ms;
  }
  set(ms: number): void {
    this.ms = ms;
  }
}
