import { describe, expect, it } from 'vitest';
import { ServerClock, fractionLeft, secondsLeft } from './clock';

describe('ServerClock', () => {
  it('counts down to the server deadline, not the local clock', () => {
    const clock = new ServerClock();
    // The server is 5 s ahead: at local 1000 it says 10 s remain before its deadline 16000.
    clock.observe(16_000, 10_000, 1_000);
    expect(clock.offset).toBe(5_000);
    expect(clock.remaining(16_000, 1_000)).toBe(10_000);
    expect(clock.remaining(16_000, 4_000)).toBe(7_000);
    expect(clock.remaining(16_000, 99_000)).toBe(0);
  });
  it('takes the least delayed reading', () => {
    const clock = new ServerClock();
    clock.observe(20_000, 10_000, 10_300); // 300 ms in transit
    clock.observe(30_000, 10_000, 20_050); // 50 ms
    expect(clock.offset).toBe(-50);
  });
  it('ignores readings past the deadline', () => {
    const clock = new ServerClock();
    clock.observe(5_000, 0, 90_000);
    expect(clock.offset).toBe(0);
  });
  it('forgets old readings', () => {
    const clock = new ServerClock(2);
    clock.observe(10_000, 1_000, 0); // offset 9000
    clock.observe(10_000, 1_000, 8_000); // 1000
    clock.observe(10_000, 1_000, 8_500); // 500
    expect(clock.offset).toBe(1_000);
  });
});

describe('seconds and fractions', () => {
  it('rounds up partial seconds', () => {
    expect(secondsLeft(200)).toBe(1);
    expect(secondsLeft(1000)).toBe(1);
    expect(secondsLeft(1001)).toBe(2);
    expect(secondsLeft(0)).toBe(0);
    expect(secondsLeft(-5)).toBe(0);
  });
  it('clamps the fraction', () => {
    expect(fractionLeft(5_000, 20_000)).toBe(0.25);
    expect(fractionLeft(30_000, 20_000)).toBe(1);
    expect(fractionLeft(-1, 20_000)).toBe(0);
    expect(fractionLeft(10, 0)).toBe(0);
  });
});
