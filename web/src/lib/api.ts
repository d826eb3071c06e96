// The client of the command and query APIs, on the same origin (relative URLs).
import { ApiError, toProblem } from './problem';
import type {
  AnswerResult,
  Joined,
  Lobby,
  LeaderboardBody,
  LiveCounts,
  PlayerStanding,
  QuizCreated,
  QuizState,
  QuizStatus,
} from './types';
import type { QuizDraftBody } from './draft';

export type Fetch = (input: string, init?: RequestInit) => Promise<Response>;

export interface RequestOptions {
  method?: 'GET' | 'POST';
  body?: unknown;
  token?: string | null;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

export interface Reply<T> {
  status: number;
  body: T;
}

async function readBody(response: Response): Promise<unknown> {
  const text = await response.text();
  if (!text) return null;
  const type = response.headers.get('content-type') ?? '';
  if (type.includes('json')) {
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  }
  return text;
}

export class Api {
  constructor(
    private readonly fetcher: Fetch = (input, init) => fetch(input, init),
    private readonly base = '',
  ) {}

  async send<T>(path: string, options: RequestOptions = {}): Promise<Reply<T>> {
    const headers: Record<string, string> = { Accept: 'application/json', ...options.headers };
    if (options.body !== undefined) headers['Content-Type'] = 'application/json';
    if (options.token) headers.Authorization = `Bearer ${options.token}`;
    let response: Response;
    try {
      response = await this.fetcher(this.base + path, {
        method: options.method ?? (options.body === undefined ? 'GET' : 'POST'),
        headers,
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
        signal: options.signal,
        cache: 'no-store',
      });
    } catch (cause) {
      if (cause instanceof DOMException && cause.name === 'AbortError') throw cause;
      throw new ApiError(toProblem(0, String(cause)));
    }
    const body = await readBody(response);
    if (!response.ok) throw new ApiError(toProblem(response.status, body, response.statusText));
    return { status: response.status, body: body as T };
  }

  async call<T>(path: string, options: RequestOptions = {}): Promise<T> {
    return (await this.send<T>(path, options)).body;
  }

  // --- commands ---

  createQuiz(draft: QuizDraftBody): Promise<QuizCreated> {
    return this.call('/v1/quizzes', { body: draft });
  }

  /** Joins, or with the player token of an earlier join, rejoins as the same player. */
  join(joinCode: string, name: string, token?: string | null): Promise<Reply<Joined>> {
    return this.send('/v1/join', { body: { join_code: joinCode.trim(), name }, token });
  }

  private host(quizId: string, path: string, token: string): Promise<QuizStatus> {
    return this.call(`/v1/quizzes/${enc(quizId)}${path}`, { method: 'POST', token });
  }
  lock(quizId: string, token: string) {
    return this.host(quizId, '/lock', token);
  }
  start(quizId: string, n: number, token: string) {
    return this.host(quizId, `/questions/${n}/start`, token);
  }
  close(quizId: string, n: number, token: string) {
    return this.host(quizId, `/questions/${n}/close`, token);
  }
  finish(quizId: string, token: string) {
    return this.host(quizId, '/finish', token);
  }
  kick(quizId: string, playerId: string, token: string) {
    return this.host(quizId, `/players/${enc(playerId)}/kick`, token);
  }

  answer(quizId: string, question: number, choice: number, token: string, idempotencyKey?: string) {
    return this.send<AnswerResult>(`/v1/quizzes/${enc(quizId)}/answers`, {
      body: { question, choice },
      token,
      headers: idempotencyKey ? { 'Idempotency-Key': idempotencyKey } : undefined,
    });
  }

  // --- reads ---

  quiz(quizId: string, signal?: AbortSignal): Promise<QuizState> {
    return this.call(`/v1/quizzes/${enc(quizId)}`, { signal });
  }
  leaderboard(quizId: string, limit = 10, signal?: AbortSignal): Promise<LeaderboardBody> {
    return this.call(`/v1/quizzes/${enc(quizId)}/leaderboard?limit=${limit}`, { signal });
  }
  player(quizId: string, playerId: string, signal?: AbortSignal): Promise<PlayerStanding> {
    return this.call(`/v1/quizzes/${enc(quizId)}/players/${enc(playerId)}`, { signal });
  }
  players(quizId: string, signal?: AbortSignal): Promise<Lobby> {
    return this.call(`/v1/quizzes/${enc(quizId)}/players`, { signal });
  }
  live(quizId: string, n: number, token: string, signal?: AbortSignal): Promise<LiveCounts> {
    return this.call(`/v1/quizzes/${enc(quizId)}/questions/${n}/live`, { token, signal });
  }
}

function enc(s: string): string {
  return encodeURIComponent(s);
}

/** The dashboard stream's URL. */
export function quizEventsUrl(quizId: string, lastEventId?: string | null): string {
  const q = lastEventId ? `?last_event_id=${encodeURIComponent(lastEventId)}` : '';
  return `/v1/quizzes/${enc(quizId)}/events${q}`;
}

/** The player stream's URL: EventSource cannot set headers, so the token rides in the query. */
export function playerEventsUrl(
  quizId: string,
  playerId: string,
  token: string,
  lastEventId?: string | null,
): string {
  const params = new URLSearchParams({ access_token: token });
  if (lastEventId) params.set('last_event_id', lastEventId);
  return `/v1/quizzes/${enc(quizId)}/players/${enc(playerId)}/events?${params}`;
}

export const api = new Api();
