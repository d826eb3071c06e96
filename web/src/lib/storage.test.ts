import { describe, expect, it } from 'vitest';
import { Store, type KeyValue } from './storage';

function kv(): KeyValue & { data: Map<string, string> } {
  const data = new Map<string, string>();
  return { data, getItem: (k) => data.get(k) ?? null, setItem: (k, v) => void data.set(k, v), removeItem: (k) => void data.delete(k) };
}

describe('Store', () => {
  it('keeps player sessions per quiz', () => {
    const s = new Store(kv());
    s.savePlayer({ quizId: 'a', playerId: 'p1', token: 't1', name: 'Ann', joinCode: 'ACDEFG' });
    s.savePlayer({ quizId: 'b', playerId: 'p2', token: 't2', name: 'Bo', joinCode: 'HJKMNP' });
    expect(s.player('a')?.token).toBe('t1');
    expect(s.player('b')?.playerId).toBe('p2');
    expect(s.player('c')).toBeNull();
  });
  it('forgets a player with their stream position', () => {
    const s = new Store(kv());
    s.savePlayer({ quizId: 'a', playerId: 'p1', token: 't1', name: 'Ann', joinCode: 'X' });
    s.saveResume('a', { lastEventId: '42', state: { x: 1 }, savedAt: 1 });
    expect(s.resume<{ x: number }>('a')?.state.x).toBe(1);
    s.forgetPlayer('a');
    expect(s.player('a')).toBeNull();
    expect(s.resume('a')).toBeNull();
  });
  it('ignores what it cannot read', () => {
    const store = kv();
    store.data.set('podium:player:a', '{not json');
    store.data.set('podium:host:a', JSON.stringify({ quizId: 'a' }));
    const s = new Store(store);
    expect(s.player('a')).toBeNull();
    expect(s.host('a')).toBeNull();
  });
});
