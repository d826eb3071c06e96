import { describe, expect, it } from 'vitest';
import { ordinal, rankChange } from './ranks';

describe('ordinal', () => {
  it.each([
    [1, '1st'], [2, '2nd'], [3, '3rd'], [4, '4th'], [10, '10th'], [11, '11th'], [12, '12th'], [13, '13th'],
    [21, '21st'], [22, '22nd'], [23, '23rd'], [101, '101st'], [111, '111th'], [112, '112th'], [1013, '1013th'],
  ])('%i → %s', (n, s) => expect(ordinal(n)).toBe(s));
});

describe('rankChange', () => {
  it('shows the move up', () => {
    expect(rankChange(7, 3)).toEqual({ text: '7th → 3rd', movement: 'up', spoken: 'Up from 7th to 3rd' });
  });
  it('shows the move down', () => {
    const r = rankChange(2, 11);
    expect(r.text).toBe('2nd → 11th');
    expect(r.movement).toBe('down');
  });
  it('no change and first rank', () => {
    expect(rankChange(4, 4).movement).toBe('same');
    expect(rankChange(null, 1)).toMatchObject({ text: '1st', movement: 'new' });
    expect(rankChange(3, null).movement).toBe('none');
  });
});
