// RFC 9457 problem documents, as every Podium error is one.

export interface FieldError {
  field: string;
  message: string;
}

export interface Problem {
  type?: string;
  title: string;
  status: number;
  code: string;
  detail?: string;
  errors?: FieldError[];
  [extension: string]: unknown;
}

/** A failed API call: the problem the server sent, or one made up for what it sent instead. */
export class ApiError extends Error {
  readonly problem: Problem;
  constructor(problem: Problem) {
    super(problem.detail || problem.title || problem.code);
    this.name = 'ApiError';
    this.problem = problem;
  }
  get status(): number {
    return this.problem.status;
  }
  get code(): string {
    return this.problem.code;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * The problem of a failed response: its body when it is a problem document, or a stand-in with
 * the code `http_<status>` (or `network_error` for status 0).
 */
export function toProblem(status: number, body: unknown, statusText = ''): Problem {
  if (isObject(body) && typeof body.code === 'string') {
    const errors = Array.isArray(body.errors)
      ? body.errors
          .filter(isObject)
          .map((e) => ({ field: String(e.field ?? ''), message: String(e.message ?? '') }))
      : undefined;
    return {
      ...body,
      title: typeof body.title === 'string' ? body.title : statusText,
      status: typeof body.status === 'number' ? body.status : status,
      code: body.code,
      detail: typeof body.detail === 'string' ? body.detail : undefined,
      errors,
    };
  }
  return {
    title: statusText || (status === 0 ? 'Network error' : `HTTP ${status}`),
    status,
    code: status === 0 ? 'network_error' : `http_${status}`,
    detail: typeof body === 'string' && body.length < 300 ? body : undefined,
  };
}

const MESSAGES: Record<string, string> = {
  quiz_not_found: 'No quiz has this code. Check it and try again.',
  name_taken: 'Someone in this quiz already has that name. Pick another one.',
  joining_locked: 'The host has closed joining for this quiz.',
  quiz_finished: 'This quiz has already finished.',
  player_kicked: 'You were removed from this quiz by the host.',
  player_not_found: 'This player is not in the quiz any more.',
  invalid_token: 'Your session is no longer valid.',
  not_host: 'This browser does not hold the host key of this quiz.',
  not_this_player: 'This browser does not hold this player’s key.',
  already_answered: 'You have already answered this question.',
  question_closed: 'Too late: the question has closed.',
  question_not_active: 'This question is not open.',
  question_out_of_order: 'Questions start in order.',
  rate_limited: 'Too many requests; wait a moment and try again.',
  event_log_busy: 'The server is busy; try again.',
  event_log_unavailable: 'The server could not record that; try again.',
  validation_failed: 'Some fields need fixing.',
  network_error: 'Could not reach the server. Check your connection.',
  not_found: 'This server does not offer that yet.',
  http_404: 'This server does not offer that yet.',
};

/** A sentence for people, by the problem's stable code. */
export function describe(problem: Problem): string {
  return MESSAGES[problem.code] ?? problem.detail ?? problem.title ?? 'Something went wrong.';
}

export function describeError(error: unknown): string {
  if (error instanceof ApiError) return describe(error.problem);
  if (error instanceof Error) return error.message;
  return String(error);
}

/** True when the endpoint itself is missing (an older server), rather than the resource. */
export function isMissingEndpoint(error: unknown): boolean {
  return (
    error instanceof ApiError &&
    (error.code === 'not_found' || error.code === 'http_404' || error.code === 'method_not_allowed' || error.code === 'http_405')
  );
}
