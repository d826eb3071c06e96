import { describe, expect, it } from 'vitest';
import { dashboardReducer, initialDashboard, lastClosed, lobbyPlayers, nextQuestion, phaseOf, podium, type DashboardEvent } from './dashboard';
import { closed, open, quiz } from './fixtures';
import type { Lobby } from './types';

const run = (events: DashboardEvent[]) => events.reduce(dashboardReducer, initialDashboard);
const entry = (id: string, rank: number, points: number) => ({ rank, player_id: id, name: id, points, elapsed_ms: 0 });
const lobby = (n: number): Lobby => ({
  quiz_id: 'q', player_count: n, connected_count: 1, truncated: false,
  players: Array.from({ length: n }, (_, i) => ({ player_id: `p${i}`, name: `P${i}`, joined_at: 100 - i, connected: i === 0 })),
});

describe('dashboardReducer', () => {
  it('follows the question flow', () => {
    let s = run([{ type: 'snapshot', data: { quiz: quiz(), leaderboard: { version: 1, ranked_players: 0, entries: [] } } }]);
    expect(phaseOf(s.quiz)).toBe('lobby');
    expect(nextQuestion(s.quiz)).toBe(1);
    s = dashboardReducer(s, { type: 'question_started', data: open(1) });
    expect(phaseOf(s.quiz)).toBe('question');
    expect(nextQuestion(s.quiz)).toBe(2);
    s = dashboardReducer(s, { type: 'question_closed', data: closed(1, 2, [0, 1, 5]) });
    expect(phaseOf(s.quiz)).toBe('reveal');
    expect(lastClosed(s.quiz)?.stats.per_choice).toEqual([0, 1, 5]);
    s = dashboardReducer(s, { type: 'quiz_finished', data: { finished_at: 9 } });
    expect(phaseOf(s.quiz)).toBe('finished');
    expect(s.quiz?.current).toBeNull();
  });

  it('does not reopen a closed question replayed late', () => {
    const s = run([
      { type: 'snapshot', data: { quiz: quiz({ status: 'between_questions', closed: [closed(1)] }) } },
      { type: 'question_started', data: open(1) },
    ]);
    expect(phaseOf(s.quiz)).toBe('reveal');
    expect(nextQuestion(s.quiz)).toBe(2);
    expect(nextQuestion(quiz({ closed: [closed(1), closed(2), closed(3)] }))).toBeNull();
  });

  it('keeps the newest leaderboard', () => {
    const s = run([
      { type: 'leaderboard', data: { version: 5, ranked_players: 2, entries: [entry('a', 1, 10)] } },
      { type: 'leaderboard', data: { version: 4, ranked_players: 1, entries: [entry('b', 1, 5)] } },
    ]);
    expect(s.leaderboard[0].player_id).toBe('a');
    expect(s.rankedPlayers).toBe(2);
  });

  it('takes the lobby from events and stops polling once they come', () => {
    let s = run([{ type: 'snapshot', data: { quiz: quiz({ player_count: 0 }) } }, { type: 'players', data: lobby(2) }]);
    expect(s.lobbyLive).toBe(false);
    expect(s.quiz?.player_count).toBe(2);
    s = dashboardReducer(s, { type: 'lobby', data: lobby(3) });
    expect(s.lobbyLive).toBe(true);
    const l = lobbyPlayers(s);
    expect(l.count).toBe(3);
    expect(l.connected).toBe(1);
    // In join order.
    expect(l.players.map((p) => p.name)).toEqual(['P2', 'P1', 'P0']);
  });

  it('ignores an older REST read', () => {
    const s = run([
      { type: 'snapshot', data: { quiz: quiz({ version: 9, status: 'question_open', current: open(1) }) } },
      { type: 'quiz', data: quiz({ version: 3 }) },
    ]);
    expect(phaseOf(s.quiz)).toBe('question');
  });

  it('podium is the top three by rank', () => {
    expect(podium([entry('c', 3, 1), entry('d', 4, 0), entry('a', 1, 9), entry('b', 2, 5)]).map((e) => e.player_id)).toEqual(['a', 'b', 'c']);
  });
});
