// The player's state: a pure reducer over the player stream
// (GET /v1/quizzes/{id}/players/{pid}/events) and the player's own answers.
import type {
  AnswerResult,
  ClosedQuestion,
  Lobby,
  OpenQuestion,
  PlayerStanding,
  QuestionResult,
  QuizState,
  RankChange,
  Status,
} from './types';

export interface MyAnswer {
  question: number;
  choice: number;
  /** The server's receipt; absent while it is on its way. */
  result: AnswerResult | null;
  pending: boolean;
  error: string | null;
}

export interface ResultView {
  question: ClosedQuestion;
  answered: boolean;
  awarded: number;
  /** The choice this player made, if known. */
  choice: number | null;
  correct: boolean;
  points: number;
  streak: number;
  streakBonus: number;
}

export interface PlayerState {
  status: Status | 'connecting';
  title: string | null;
  questionCount: number;
  playerCount: number;
  current: OpenQuestion | null;
  /** Answers by question number. */
  answers: Record<string, MyAnswer>;
  result: ResultView | null;
  you: PlayerStanding | null;
  rank: number | null;
  /** The rank when the last question started: the result shows the move from it. */
  rankBefore: number | null;
  kicked: boolean;
  lobby: Lobby | null;
  /** The highest question number seen, so an old event never rewinds the screen. */
  seen: number;
}

export type PlayerEvent =
  | { type: 'snapshot'; data: { resync?: boolean; quiz: QuizState; you: PlayerStanding | null } }
  | { type: 'question_started'; data: OpenQuestion }
  | { type: 'question_closed'; data: ClosedQuestion }
  | { type: 'question_result'; data: QuestionResult }
  | { type: 'rank'; data: RankChange }
  | { type: 'quiz_finished'; data: { finished_at: number } }
  | { type: 'kicked' }
  | { type: 'players'; data: Lobby }
  | { type: 'answer_sent'; question: number; choice: number }
  | { type: 'answer_ok'; data: AnswerResult }
  | { type: 'answer_failed'; question: number; message: string; keep?: boolean };

export const initialPlayer: PlayerState = {
  status: 'connecting',
  title: null,
  questionCount: 0,
  playerCount: 0,
  current: null,
  answers: {},
  result: null,
  you: null,
  rank: null,
  rankBefore: null,
  kicked: false,
  lobby: null,
  seen: 0,
};

function resultOf(question: ClosedQuestion, answered: boolean, awarded: number, mine: MyAnswer | undefined): ResultView {
  const choice = mine ? mine.choice : null;
  const receipt = mine?.result ?? null;
  const correct = choice !== null ? choice === question.correct_choice : answered && awarded > 0;
  return {
    question,
    answered: answered || receipt !== null,
    awarded,
    choice,
    correct,
    points: receipt ? receipt.points : awarded,
    streak: receipt ? receipt.streak : 0,
    streakBonus: receipt ? receipt.streak_bonus : 0,
  };
}

function lastClosed(closed: ClosedQuestion[]): ClosedQuestion | null {
  return closed.length ? closed.reduce((a, b) => (b.number > a.number ? b : a)) : null;
}

export function playerReducer(state: PlayerState, event: PlayerEvent): PlayerState {
  if (state.kicked && event.type !== 'snapshot') return state;
  switch (event.type) {
    case 'snapshot': {
      const { quiz, you } = event.data;
      const closed = lastClosed(quiz.closed);
      const seen = Math.max(quiz.current?.number ?? 0, closed?.number ?? 0);
      let result = state.result;
      if (!quiz.current && closed && (!result || result.question.number !== closed.number)) {
        const mine = state.answers[String(closed.number)];
        result = resultOf(closed, Boolean(mine), mine?.result ? mine.result.points + mine.result.streak_bonus : 0, mine);
      }
      return {
        ...state,
        status: quiz.status,
        title: quiz.title,
        questionCount: quiz.question_count,
        playerCount: quiz.player_count,
        current: quiz.current,
        result: quiz.current ? null : result,
        you: you ?? state.you,
        rank: you?.rank ?? state.rank,
        rankBefore: state.rankBefore ?? you?.rank ?? null,
        seen,
      };
    }
    case 'question_started': {
      const q = event.data;
      if (q.number < state.seen || state.status === 'finished') return state;
      return {
        ...state,
        status: 'question_open',
        current: q,
        result: null,
        rankBefore: state.rank,
        seen: q.number,
      };
    }
    case 'question_closed':
    case 'question_result': {
      const data: QuestionResult =
        event.type === 'question_result' ? event.data : { question: event.data, answered: false, awarded: 0, you: null };
      const q = data.question;
      if (q.number < state.seen) return state;
      const mine = state.answers[String(q.number)];
      const you = data.you ?? state.you;
      return {
        ...state,
        status: state.status === 'finished' ? 'finished' : 'between_questions',
        current: state.current && state.current.number === q.number ? null : state.current,
        result: resultOf(q, data.answered, data.awarded, mine),
        you,
        rank: you?.rank ?? state.rank,
        seen: q.number,
      };
    }
    case 'rank':
      return { ...state, rank: event.data.to, you: event.data.you ?? state.you };
    case 'quiz_finished':
      return { ...state, status: 'finished', current: null };
    case 'kicked':
      return { ...state, kicked: true, current: null };
    case 'players':
      return { ...state, lobby: event.data, playerCount: event.data.player_count };
    case 'answer_sent': {
      const key = String(event.question);
      const existing = state.answers[key];
      if (existing && (existing.result || existing.pending)) return state;
      return {
        ...state,
        answers: { ...state.answers, [key]: { question: event.question, choice: event.choice, result: null, pending: true, error: null } },
      };
    }
    case 'answer_ok': {
      const r = event.data;
      const key = String(r.question);
      const answers = { ...state.answers, [key]: { question: r.question, choice: r.choice, result: r, pending: false, error: null } };
      // A receipt that arrives after the reveal still fills in the detail.
      const result =
        state.result && state.result.question.number === r.question
          ? resultOf(state.result.question, true, state.result.awarded, answers[key])
          : state.result;
      return { ...state, answers, result };
    }
    case 'answer_failed': {
      const key = String(event.question);
      const existing = state.answers[key];
      if (!existing) return state;
      if (event.keep) {
        return { ...state, answers: { ...state.answers, [key]: { ...existing, pending: false, error: event.message } } };
      }
      // Not recorded: the player may tap again.
      const answers = { ...state.answers };
      delete answers[key];
      return { ...state, answers, result: state.result };
    }
  }
}

/** What the player's screen shows. */
export type PlayerView = 'connecting' | 'kicked' | 'lobby' | 'question' | 'answered' | 'result' | 'waiting' | 'finished';

export function playerView(state: PlayerState): PlayerView {
  if (state.kicked) return 'kicked';
  switch (state.status) {
    case 'connecting':
      return 'connecting';
    case 'lobby':
      return 'lobby';
    case 'finished':
      return 'finished';
    case 'question_open': {
      if (!state.current) return state.result ? 'result' : 'waiting';
      const mine = state.answers[String(state.current.number)];
      return mine ? 'answered' : 'question';
    }
    case 'between_questions':
      return state.result ? 'result' : 'waiting';
  }
}

/** The part of the state worth keeping across a reload. */
export function persistable(state: PlayerState): PlayerState {
  const answers: Record<string, MyAnswer> = {};
  for (const [k, a] of Object.entries(state.answers)) {
    // A request in flight may not have been recorded: forget it, a retry says.
    if (a.result) answers[k] = a;
  }
  return { ...state, answers, lobby: null };
}
