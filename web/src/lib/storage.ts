// What this browser keeps per quiz: the player's or host's token, and where the player's stream
// stood, so that a reload resumes.

export interface KeyValue {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

export interface PlayerSession {
  quizId: string;
  playerId: string;
  token: string;
  name: string;
  joinCode: string;
}

export interface HostSession {
  quizId: string;
  token: string;
  joinCode: string;
  title: string;
  questions: number;
}

/** Where the player stream stood: its last event id and the state that id leads to. */
export interface StreamResume<S> {
  lastEventId: string;
  state: S;
  savedAt: number;
}

const PREFIX = 'podium:';

function memory(): KeyValue {
  const m = new Map<string, string>();
  return {
    getItem: (k) => m.get(k) ?? null,
    setItem: (k, v) => void m.set(k, v),
    removeItem: (k) => void m.delete(k),
  };
}

function defaultStore(): KeyValue {
  try {
    const s = globalThis.localStorage;
    if (s) {
      s.setItem(`${PREFIX}probe`, '1');
      s.removeItem(`${PREFIX}probe`);
      return s;
    }
  } catch {
    // Private mode or storage disabled: this tab alone remembers.
  }
  return memory();
}

export class Store {
  constructor(private readonly kv: KeyValue = defaultStore()) {}

  private get<T>(key: string, valid: (v: unknown) => v is T): T | null {
    const raw = this.kv.getItem(PREFIX + key);
    if (raw === null) return null;
    try {
      const value: unknown = JSON.parse(raw);
      return valid(value) ? value : null;
    } catch {
      return null;
    }
  }
  private put(key: string, value: unknown): void {
    try {
      this.kv.setItem(PREFIX + key, JSON.stringify(value));
    } catch {
      // Full: nothing to do but carry on.
    }
  }

  player(quizId: string): PlayerSession | null {
    const s = this.get(`player:${quizId}`, isPlayerSession);
    return s && s.quizId === quizId ? s : null;
  }
  savePlayer(session: PlayerSession): void {
    this.put(`player:${session.quizId}`, session);
  }
  forgetPlayer(quizId: string): void {
    this.kv.removeItem(`${PREFIX}player:${quizId}`);
    this.kv.removeItem(`${PREFIX}stream:${quizId}`);
  }

  host(quizId: string): HostSession | null {
    const s = this.get(`host:${quizId}`, isHostSession);
    return s && s.quizId === quizId ? s : null;
  }
  saveHost(session: HostSession): void {
    this.put(`host:${session.quizId}`, session);
  }

  resume<S>(quizId: string): StreamResume<S> | null {
    return this.get(`stream:${quizId}`, isResume) as StreamResume<S> | null;
  }
  saveResume<S>(quizId: string, resume: StreamResume<S>): void {
    this.put(`stream:${quizId}`, resume);
  }
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null;
}
function isPlayerSession(v: unknown): v is PlayerSession {
  return (
    isObj(v) &&
    typeof v.quizId === 'string' &&
    typeof v.playerId === 'string' &&
    typeof v.token === 'string' &&
    typeof v.name === 'string' &&
    typeof v.joinCode === 'string'
  );
}
function isHostSession(v: unknown): v is HostSession {
  return isObj(v) && typeof v.quizId === 'string' && typeof v.token === 'string' && typeof v.joinCode === 'string';
}
function isResume(v: unknown): v is StreamResume<unknown> {
  return isObj(v) && typeof v.lastEventId === 'string' && isObj(v.state);
}

export const store = new Store();
