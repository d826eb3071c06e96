import { describe, expect, it } from 'vitest';
import { Api } from './api';
import { ApiError, describe as say, isMissingEndpoint, toProblem } from './problem';

function reply(status: number, body: unknown, type = 'application/problem+json') {
  return new Response(typeof body === 'string' ? body : JSON.stringify(body), { status, headers: { 'content-type': type } });
}

describe('toProblem', () => {
  it('keeps the code, detail and field errors', () => {
    const p = toProblem(422, {
      type: 'about:blank', title: 'Unprocessable Entity', status: 422, code: 'validation_failed', detail: 'x',
      errors: [{ field: 'questions[0].choices', message: 'a question has 2 to 6 choices' }],
    });
    expect(p.code).toBe('validation_failed');
    expect(p.errors).toEqual([{ field: 'questions[0].choices', message: 'a question has 2 to 6 choices' }]);
  });
  it('makes one up for a body that is not a problem', () => {
    expect(toProblem(502, '<html>bad gateway</html>', 'Bad Gateway')).toMatchObject({ code: 'http_502', status: 502, title: 'Bad Gateway' });
    expect(toProblem(0, 'TypeError').code).toBe('network_error');
  });
  it('describes known codes for people', () => {
    expect(say(toProblem(409, { code: 'name_taken', title: 'Conflict', status: 409 }))).toMatch(/already has that name/);
    expect(say(toProblem(409, { code: 'mystery', title: 'Conflict', status: 409, detail: 'the detail' }))).toBe('the detail');
  });
});

describe('Api', () => {
  it('sends the bearer token and idempotency key, and throws problems', async () => {
    const seen: { url: string; init?: RequestInit }[] = [];
    const api = new Api(async (url, init) => {
      seen.push({ url, init });
      return reply(409, { code: 'already_answered', title: 'Conflict', status: 409, original: { choice: 2 } });
    });
    const err = await api.answer('quiz 1', 2, 1, 'tok', 'key-1').catch((e) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err.code).toBe('already_answered');
    expect(err.problem.original).toEqual({ choice: 2 });
    expect(seen[0].url).toBe('/v1/quizzes/quiz%201/answers');
    const headers = seen[0].init?.headers as Record<string, string>;
    expect(headers.Authorization).toBe('Bearer tok');
    expect(headers['Idempotency-Key']).toBe('key-1');
    expect(JSON.parse(String(seen[0].init?.body))).toEqual({ question: 2, choice: 1 });
  });
  it('returns the status with the body (join 201 vs rejoin 200)', async () => {
    const api = new Api(async () => reply(200, { quiz_id: 'q', player_id: 'p', name: 'n', player_token: 't' }, 'application/json'));
    const r = await api.join(' ABCDEF ', 'n', 't');
    expect(r.status).toBe(200);
    expect(r.body.player_id).toBe('p');
  });
  it('tells a missing endpoint from a failure', async () => {
    const api = new Api(async () => reply(404, { code: 'not_found', title: 'Not Found', status: 404 }));
    const err = await api.players('q').catch((e) => e);
    expect(isMissingEndpoint(err)).toBe(true);
    const other = new Api(async () => reply(404, { code: 'quiz_not_found', title: 'Not Found', status: 404 }));
    expect(isMissingEndpoint(await other.players('q').catch((e) => e))).toBe(false);
  });
  it('turns a network failure into a problem', async () => {
    const api = new Api(async () => {
      throw new TypeError('Failed to fetch');
    });
    const err = await api.quiz('q').catch((e) => e);
    expect(err.code).toBe('network_error');
  });
});
