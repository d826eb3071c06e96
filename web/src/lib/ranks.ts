// Ranks in words.

/** 1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st, 101st, 111th... */
export function ordinal(n: number): string {
  const abs = Math.abs(Math.trunc(n));
  const lastTwo = abs % 100;
  if (lastTwo >= 11 && lastTwo <= 13) return `${n}th`;
  switch (abs % 10) {
    case 1:
      return `${n}st`;
    case 2:
      return `${n}nd`;
    case 3:
      return `${n}rd`;
    default:
      return `${n}th`;
  }
}

export type Movement = 'up' | 'down' | 'same' | 'new' | 'none';

export interface RankText {
  text: string;
  movement: Movement;
  /** A sentence for screen readers. */
  spoken: string;
}

/** "7th → 3rd": where a player was and is now. A smaller rank is better. */
export function rankChange(from: number | null | undefined, to: number | null | undefined): RankText {
  if (to == null) return { text: 'Not ranked yet', movement: 'none', spoken: 'Not ranked yet' };
  if (from == null) {
    return { text: ordinal(to), movement: 'new', spoken: `You are ${ordinal(to)}` };
  }
  if (from === to) {
    return { text: `${ordinal(to)}`, movement: 'same', spoken: `You are still ${ordinal(to)}` };
  }
  const movement: Movement = to < from ? 'up' : 'down';
  return {
    text: `${ordinal(from)} → ${ordinal(to)}`,
    movement,
    spoken: `${movement === 'up' ? 'Up' : 'Down'} from ${ordinal(from)} to ${ordinal(to)}`,
  };
}
