import { describe, expect, it } from 'vitest';
import { href, joinLink, parseHash } from './route';

describe('parseHash', () => {
  it('routes every page', () => {
    expect(parseHash('')).toEqual({ page: 'home' });
    expect(parseHash('#/')).toEqual({ page: 'home' });
    expect(parseHash('#/join/abc d')).toEqual({ page: 'join', code: 'ABCD' });
    expect(parseHash('#/play/q-1')).toEqual({ page: 'play', quizId: 'q-1' });
    expect(parseHash('#/host')).toEqual({ page: 'host' });
    expect(parseHash('#/host/q-1')).toEqual({ page: 'console', quizId: 'q-1', handoff: null });
    expect(parseHash('#/host/q-1?code=ab%20cdef&key=t.o.k')).toEqual({
      page: 'console',
      quizId: 'q-1',
      handoff: { token: 't.o.k', code: 'ABCDEF' },
    });
    // Both are needed: a key without its code is not a handoff.
    expect(parseHash('#/host/q-1?key=t.o.k')).toEqual({ page: 'console', quizId: 'q-1', handoff: null });
    expect(parseHash('#/screen/q-1?code=acd34')).toEqual({ page: 'screen', quizId: 'q-1', code: 'ACD34' });
    expect(parseHash('#/screen/q-1')).toEqual({ page: 'screen', quizId: 'q-1', code: null });
    expect(parseHash('#/nope/x/y').page).toBe('not_found');
  });
  it('round-trips its own links', () => {
    expect(parseHash(href.screen('id/1', 'XY'))).toEqual({ page: 'screen', quizId: 'id/1', code: 'XY' });
    expect(joinLink('https://quiz.example', 'ACDEFG')).toBe('https://quiz.example/#/join/ACDEFG');
  });
});
