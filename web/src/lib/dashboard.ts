// The dashboard stream's state (big screen and host console): a pure reducer over the events
// of GET /v1/quizzes/{id}/events, REST reads and host command answers.
import type {
  ClosedQuestion,
  LeaderboardBody,
  LeaderboardEntry,
  Lobby,
  OpenQuestion,
  QuizState,
  QuizStatus,
} from './types';

export interface DashboardState {
  quiz: QuizState | null;
  leaderboard: LeaderboardEntry[];
  leaderboardVersion: number;
  rankedPlayers: number;
  lobby: Lobby | null;
  /** True once the server sent a `lobby` event: no need to poll for players. */
  lobbyLive: boolean;
  /** Local time of the last change, for "moved" animations. */
  error: string | null;
}

export type DashboardEvent =
  | { type: 'snapshot'; data: { resync?: boolean; quiz: QuizState; leaderboard?: LeaderboardBody } }
  | { type: 'question_started'; data: OpenQuestion }
  | { type: 'question_closed'; data: ClosedQuestion }
  | { type: 'leaderboard'; data: LeaderboardBody }
  | { type: 'quiz_finished'; data: { finished_at: number } }
  | { type: 'lobby'; data: Lobby }
  | { type: 'players'; data: Lobby }
  | { type: 'quiz'; data: QuizState }
  | { type: 'status'; data: QuizStatus }
  | { type: 'error'; message: string | null };

export const initialDashboard: DashboardState = {
  quiz: null,
  leaderboard: [],
  leaderboardVersion: -1,
  rankedPlayers: 0,
  lobby: null,
  lobbyLive: false,
  error: null,
};

function withClosed(closed: ClosedQuestion[], q: ClosedQuestion): ClosedQuestion[] {
  return [...closed.filter((c) => c.number !== q.number), q].sort((a, b) => a.number - b.number);
}

function emptyQuiz(quizId: string): QuizState {
  return {
    quiz_id: quizId,
    version: 0,
    status: 'lobby',
    title: null,
    question_count: 0,
    player_count: 0,
    joining_locked_at: null,
    finished_at: null,
    current: null,
    closed: [],
  };
}

function board(state: DashboardState, body: LeaderboardBody): DashboardState {
  if (body.version < state.leaderboardVersion) return state;
  return {
    ...state,
    leaderboard: body.entries,
    leaderboardVersion: body.version,
    rankedPlayers: body.ranked_players,
  };
}

export function dashboardReducer(state: DashboardState, event: DashboardEvent): DashboardState {
  switch (event.type) {
    case 'snapshot': {
      const next: DashboardState = { ...state, quiz: event.data.quiz, error: null };
      // A resync's leaderboard replaces whatever was shown, even if its version is lower.
      if (event.data.leaderboard) {
        return board({ ...next, leaderboardVersion: event.data.resync ? -1 : next.leaderboardVersion }, event.data.leaderboard);
      }
      return next;
    }
    case 'quiz': {
      // A REST read: newer or equal versions win; a stream is ahead of an older read.
      if (state.quiz && event.data.version < state.quiz.version) return state;
      return { ...state, quiz: event.data };
    }
    case 'question_started': {
      const q = event.data;
      const quiz = state.quiz ?? emptyQuiz('');
      if (quiz.status === 'finished') return state;
      if (quiz.closed.some((c) => c.number === q.number)) return state;
      return { ...state, quiz: { ...quiz, status: 'question_open', current: q } };
    }
    case 'question_closed': {
      const q = event.data;
      const quiz = state.quiz ?? emptyQuiz('');
      const current = quiz.current && quiz.current.number === q.number ? null : quiz.current;
      const status = quiz.status === 'finished' ? 'finished' : current ? 'question_open' : 'between_questions';
      return { ...state, quiz: { ...quiz, status, current, closed: withClosed(quiz.closed, q) } };
    }
    case 'leaderboard':
      return board(state, event.data);
    case 'quiz_finished': {
      const quiz = state.quiz ?? emptyQuiz('');
      return {
        ...state,
        quiz: { ...quiz, status: 'finished', current: null, finished_at: event.data.finished_at },
      };
    }
    case 'lobby':
    case 'players': {
      const lobby = event.data;
      const quiz = state.quiz
        ? { ...state.quiz, player_count: lobby.player_count, connected_count: lobby.connected_count }
        : state.quiz;
      return { ...state, lobby, quiz, lobbyLive: state.lobbyLive || event.type === 'lobby' };
    }
    case 'status': {
      // A host command's answer: enough to move the console on before the stream says so.
      const s = event.data;
      const quiz = state.quiz;
      if (!quiz) return state;
      let next: QuizState = {
        ...quiz,
        joining_locked_at: s.joining_locked ? (quiz.joining_locked_at ?? Date.now()) : quiz.joining_locked_at,
      };
      if (s.finished && quiz.status !== 'finished') {
        next = { ...next, status: 'finished', current: null, finished_at: next.finished_at ?? Date.now() };
      }
      return { ...state, quiz: next };
    }
    case 'error':
      return { ...state, error: event.message };
  }
}

export type Phase = 'loading' | 'lobby' | 'question' | 'reveal' | 'finished';

export function phaseOf(quiz: QuizState | null): Phase {
  if (!quiz) return 'loading';
  switch (quiz.status) {
    case 'lobby':
      return 'lobby';
    case 'question_open':
      return quiz.current ? 'question' : 'reveal';
    case 'between_questions':
      return 'reveal';
    case 'finished':
      return 'finished';
  }
}

/** The question closed last, for the reveal. */
export function lastClosed(quiz: QuizState | null): ClosedQuestion | null {
  if (!quiz || quiz.closed.length === 0) return null;
  return quiz.closed.reduce((a, b) => (b.number > a.number ? b : a));
}

/** The number of the question the host can start next, or null when all have started. */
export function nextQuestion(quiz: QuizState | null): number | null {
  if (!quiz) return null;
  const started = Math.max(0, quiz.current?.number ?? 0, ...quiz.closed.map((c) => c.number));
  return started < quiz.question_count ? started + 1 : null;
}

/** Players in the lobby, in join order, and the count to show when the list is unknown. */
export function lobbyPlayers(state: DashboardState): { players: Lobby['players']; count: number; connected: number | null } {
  const players = [...(state.lobby?.players ?? [])].sort((a, b) => a.joined_at - b.joined_at || a.name.localeCompare(b.name));
  const count = state.lobby?.player_count ?? state.quiz?.player_count ?? 0;
  const connected = state.lobby?.connected_count ?? state.quiz?.connected_count ?? null;
  return { players, count, connected };
}

/** The top three, for the podium: ranks can tie, so this is by position in the leaderboard. */
export function podium(entries: LeaderboardEntry[]): LeaderboardEntry[] {
  return [...entries].sort((a, b) => a.rank - b.rank).slice(0, 3);
}
