// Shapes of the Podium APIs, as served (see command-api/src/http.rs, query-api/src/views.rs,
// query-api/src/live/*.rs).

export type Millis = number;

export interface QuizCreated {
  quiz_id: string;
  join_code: string;
  title: string;
  questions: number;
  host_token: string;
}

export interface Joined {
  quiz_id: string;
  player_id: string;
  name: string;
  player_token: string;
}

export interface CurrentQuestionStatus {
  number: number;
  started_at: Millis;
  deadline: Millis;
  open: boolean;
}

/** What a host command answers with. */
export interface QuizStatus {
  quiz_id: string;
  questions: number;
  players: number;
  joining_locked: boolean;
  finished: boolean;
  current_question: CurrentQuestionStatus | null;
}

export interface AnswerResult {
  quiz_id: string;
  player_id: string;
  question: number;
  choice: number;
  correct: boolean;
  points: number;
  streak: number;
  streak_bonus: number;
  elapsed_ms: number;
  total?: number;
}

export type Status = 'lobby' | 'question_open' | 'between_questions' | 'finished';

export interface OpenQuestion {
  number: number;
  text: string;
  choices: string[];
  points: number;
  time_limit_ms: number;
  started_at: Millis;
  deadline: Millis;
  remaining_ms: number;
}

export interface QuestionStats {
  answers: number;
  correct: number;
  mean_elapsed_ms: number;
  per_choice: number[];
}

export interface ClosedQuestion {
  number: number;
  text: string;
  choices: string[];
  correct_choice: number;
  reason: string;
  closed_at: Millis;
  stats: QuestionStats;
}

export interface QuizState {
  quiz_id: string;
  version: number;
  source?: 'live' | 'durable';
  status: Status;
  title: string | null;
  created_at?: Millis | null;
  question_count: number;
  player_count: number;
  /** New; absent on servers without presence. */
  connected_count?: number;
  joining_locked_at: Millis | null;
  finished_at: Millis | null;
  current: OpenQuestion | null;
  closed: ClosedQuestion[];
  /** Present only if the server carries it. */
  join_code?: string;
}

export interface LeaderboardEntry {
  rank: number;
  player_id: string;
  name: string | null;
  points: number;
  elapsed_ms: number;
}

export interface LeaderboardBody {
  version: number;
  ranked_players: number;
  entries: LeaderboardEntry[];
}

export interface PlayerStanding {
  quiz_id: string;
  player_id: string;
  version: number;
  name: string | null;
  rank: number | null;
  ranked_players: number;
  percentile: number | null;
  points: number;
  elapsed_ms: number;
  answers: number;
  streak: number;
}

export interface LobbyPlayer {
  player_id: string;
  name: string;
  joined_at: Millis;
  connected: boolean;
}

/** The `lobby` event, and the body of GET /v1/quizzes/{id}/players. */
export interface Lobby {
  quiz_id: string;
  player_count: number;
  connected_count: number;
  players: LobbyPlayer[];
  truncated: boolean;
}

/** GET /v1/quizzes/{id}/questions/{n}/live (host only). */
export interface LiveCounts {
  quiz_id: string;
  question: number;
  answers: number;
  per_choice: number[];
}

/** The player stream's `question_result`. */
export interface QuestionResult {
  question: ClosedQuestion;
  answered: boolean;
  awarded: number;
  you: PlayerStanding | null;
}

export interface RankChange {
  from: number | null;
  to: number | null;
  you: PlayerStanding;
}
