// The server's clock, as seen from here: countdowns run to the server's deadline.

/**
 * Estimates `server time - local time` from readings of a deadline and the time left before
 * it, each taken on receipt. A reading is late by its transit time, which makes the server look
 * behind, so the largest of the recent estimates is the closest.
 */
export class ServerClock {
  private samples: number[] = [];
  constructor(private readonly keep = 5) {}

  /** A reading: `remainingMs` before `deadline` (server ms) when received at `receivedAt` (local ms). */
  observe(deadline: number, remainingMs: number, receivedAt: number): void {
    // Past the deadline the server says 0, which tells nothing about its clock.
    if (!(remainingMs > 0) || !Number.isFinite(deadline)) return;
    const serverNow = deadline - remainingMs;
    this.samples.push(serverNow - receivedAt);
    if (this.samples.length > this.keep) this.samples.shift();
  }

  /** Server minus local, in ms; 0 before any reading. */
  get offset(): number {
    return this.samples.length ? Math.max(...this.samples) : 0;
  }

  set offset(value: number) {
    this.samples = [value];
  }

  /** The server's time now. */
  now(localNow: number = Date.now()): number {
    return localNow + this.offset;
  }

  /** Milliseconds left before `deadline` (server ms), never below 0. */
  remaining(deadline: number, localNow: number = Date.now()): number {
    return Math.max(0, deadline - this.now(localNow));
  }
}

/** Whole seconds to show for `ms` left: 0.2 s left still shows 1. */
export function secondsLeft(ms: number): number {
  return ms <= 0 ? 0 : Math.ceil(ms / 1000);
}

/** The share of the time limit left, from 0 to 1. */
export function fractionLeft(remainingMs: number, timeLimitMs: number): number {
  if (!(timeLimitMs > 0)) return 0;
  return Math.min(1, Math.max(0, remainingMs / timeLimitMs));
}
