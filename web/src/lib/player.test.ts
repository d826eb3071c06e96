import { describe, expect, it } from 'vitest';
import { closed, open, quiz, standing } from './fixtures';
import { initialPlayer, persistable, playerReducer, playerView, type PlayerEvent, type PlayerState } from './player';
import type { AnswerResult } from './types';

const run = (events: PlayerEvent[], from: PlayerState = initialPlayer) => events.reduce(playerReducer, from);

function receipt(question: number, choice: number, extra: Partial<AnswerResult> = {}): AnswerResult {
  return { quiz_id: 'q', player_id: 'p', question, choice, correct: choice === 1, points: 800, streak: 2, streak_bonus: 100, elapsed_ms: 2000, total: 1800, ...extra };
}

describe('playerReducer', () => {
  it('goes lobby → question → answered → result', () => {
    let s = run([{ type: 'snapshot', data: { quiz: quiz(), you: standing(null) } }]);
    expect(playerView(s)).toBe('lobby');
    s = run([{ type: 'question_started', data: open(1) }], s);
    expect(playerView(s)).toBe('question');
    s = run([{ type: 'answer_sent', question: 1, choice: 1 }], s);
    expect(playerView(s)).toBe('answered');
    expect(s.answers['1'].pending).toBe(true);
    s = run([{ type: 'answer_ok', data: receipt(1, 1) }], s);
    expect(s.answers['1'].result?.points).toBe(800);
    s = run([{ type: 'question_result', data: { question: closed(1, 1), answered: true, awarded: 900, you: standing(3, 900) } }], s);
    expect(playerView(s)).toBe('result');
    expect(s.result).toMatchObject({ correct: true, choice: 1, points: 800, streakBonus: 100, streak: 2, answered: true });
    expect(s.rank).toBe(3);
  });

  it('judges a wrong answer by the key revealed at close, not by the receipt', () => {
    const s = run([
      { type: 'snapshot', data: { quiz: quiz(), you: null } },
      { type: 'question_started', data: open(1) },
      { type: 'answer_sent', question: 1, choice: 2 },
      { type: 'question_result', data: { question: closed(1, 1), answered: true, awarded: 0, you: standing(4) } },
    ]);
    expect(s.result).toMatchObject({ correct: false, choice: 2, answered: true });
  });

  it('shows no answer when the player did not answer', () => {
    const s = run([
      { type: 'snapshot', data: { quiz: quiz(), you: null } },
      { type: 'question_started', data: open(1) },
      { type: 'question_result', data: { question: closed(1), answered: false, awarded: 0, you: null } },
    ]);
    expect(s.result?.answered).toBe(false);
    expect(s.result?.correct).toBe(false);
  });

  it('tracks the rank from the start of the question for "7th → 3rd"', () => {
    let s = run([{ type: 'snapshot', data: { quiz: quiz({ status: 'between_questions', closed: [closed(1)] }), you: standing(7) } }]);
    expect(s.rank).toBe(7);
    s = run([
      { type: 'question_started', data: open(2) },
      { type: 'question_result', data: { question: closed(2), answered: true, awarded: 1000, you: standing(5) } },
      { type: 'rank', data: { from: 5, to: 3, you: standing(3) } },
    ], s);
    expect(s.rankBefore).toBe(7);
    expect(s.rank).toBe(3);
  });

  it('never rewinds to an older question', () => {
    const s = run([
      { type: 'snapshot', data: { quiz: quiz({ status: 'question_open', current: open(2), closed: [closed(1)] }), you: null } },
      { type: 'question_started', data: open(1) },
      { type: 'question_result', data: { question: closed(1), answered: false, awarded: 0, you: null } },
    ]);
    expect(s.current?.number).toBe(2);
    expect(playerView(s)).toBe('question');
  });

  it('lets the player tap again when an answer was not recorded, and not when it was refused for good', () => {
    let s = run([
      { type: 'snapshot', data: { quiz: quiz(), you: null } },
      { type: 'question_started', data: open(1) },
      { type: 'answer_sent', question: 1, choice: 0 },
      { type: 'answer_failed', question: 1, message: 'network' },
    ]);
    expect(playerView(s)).toBe('question');
    s = run([{ type: 'answer_sent', question: 1, choice: 0 }, { type: 'answer_failed', question: 1, message: 'closed', keep: true }], s);
    expect(playerView(s)).toBe('answered');
    expect(s.answers['1'].error).toBe('closed');
  });

  it('ignores a second tap while the first is on its way', () => {
    const s = run([
      { type: 'snapshot', data: { quiz: quiz(), you: null } },
      { type: 'question_started', data: open(1) },
      { type: 'answer_sent', question: 1, choice: 0 },
      { type: 'answer_sent', question: 1, choice: 2 },
    ]);
    expect(s.answers['1'].choice).toBe(0);
  });

  it('stays on the removed screen once kicked', () => {
    const s = run([
      { type: 'snapshot', data: { quiz: quiz(), you: null } },
      { type: 'kicked' },
      { type: 'question_started', data: open(1) },
    ]);
    expect(playerView(s)).toBe('kicked');
  });

  it('finishes', () => {
    const s = run([{ type: 'snapshot', data: { quiz: quiz(), you: null } }, { type: 'quiz_finished', data: { finished_at: 5 } }]);
    expect(playerView(s)).toBe('finished');
  });

  it('resumes after a reload with the recorded answer, and drops one in flight', () => {
    const s = run([
      { type: 'snapshot', data: { quiz: quiz(), you: null } },
      { type: 'question_started', data: open(1) },
      { type: 'answer_sent', question: 1, choice: 1 },
      { type: 'answer_ok', data: receipt(1, 1) },
    ]);
    const kept = persistable(s);
    expect(JSON.parse(JSON.stringify(kept)).answers['1'].choice).toBe(1);
    const restored = run([{ type: 'question_result', data: { question: closed(1, 1), answered: true, awarded: 900, you: standing(1) } }], kept);
    expect(restored.result?.correct).toBe(true);
    const inFlight = persistable(run([{ type: 'question_started', data: open(2) }, { type: 'answer_sent', question: 2, choice: 0 }], s));
    expect(inFlight.answers['2']).toBeUndefined();
  });

  it('a snapshot after the close shows the result of the last question', () => {
    const s = run([{ type: 'snapshot', data: { quiz: quiz({ status: 'between_questions', closed: [closed(1), closed(2, 0)] }), you: standing(2) } }]);
    expect(playerView(s)).toBe('result');
    expect(s.result?.question.number).toBe(2);
  });
});
