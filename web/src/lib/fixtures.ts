// Test data shaped like the APIs' bodies.
import type { ClosedQuestion, OpenQuestion, PlayerStanding, QuizState } from './types';

export function open(number: number, extra: Partial<OpenQuestion> = {}): OpenQuestion {
  return {
    number, text: `Q${number}`, choices: ['A', 'B', 'C'], points: 1000, time_limit_ms: 20_000,
    started_at: 1_000, deadline: 21_000, remaining_ms: 20_000, ...extra,
  };
}

export function closed(number: number, correct = 1, perChoice = [1, 2, 0]): ClosedQuestion {
  return {
    number, text: `Q${number}`, choices: ['A', 'B', 'C'], correct_choice: correct, reason: 'HOST', closed_at: 30_000,
    stats: { answers: perChoice.reduce((a, b) => a + b, 0), correct: perChoice[correct], mean_elapsed_ms: 900, per_choice: perChoice },
  };
}

export function quiz(extra: Partial<QuizState> = {}): QuizState {
  return {
    quiz_id: 'q', version: 1, status: 'lobby', title: 'T', question_count: 3, player_count: 2,
    joining_locked_at: null, finished_at: null, current: null, closed: [], ...extra,
  };
}

export function standing(rank: number | null, points = 0): PlayerStanding {
  return { quiz_id: 'q', player_id: 'p', version: 1, name: 'Ann', rank, ranked_players: 5, percentile: null, points, elapsed_ms: 0, answers: 0, streak: 0 };
}
