// Hash routes: the gateway serves one index.html at /.

export type Route =
  | { page: 'home' }
  | { page: 'join'; code: string }
  | { page: 'play'; quizId: string }
  | { page: 'host' }
  | { page: 'console'; quizId: string; handoff: Handoff | null }
  | { page: 'screen'; quizId: string; code: string | null }
  | { page: 'not_found'; path: string };

/** A host key handed over in the link (`#/host/ID?code=…&key=…`), as run.sh prints it for
 * its demo quiz. It lives in the fragment, which browsers never send to a server. */
export interface Handoff {
  token: string;
  code: string;
}

export function parseHash(hash: string): Route {
  const raw = hash.replace(/^#/, '');
  const [pathPart, queryPart = ''] = raw.split('?', 2);
  const parts = pathPart.split('/').filter(Boolean).map(safeDecode);
  const query = new URLSearchParams(queryPart);
  if (parts.length === 0) return { page: 'home' };
  const [head, id] = parts;
  if (parts.length === 2 && head === 'join') return { page: 'join', code: normalizeCode(id) };
  if (parts.length === 1 && head === 'join') return { page: 'home' };
  if (parts.length === 2 && head === 'play') return { page: 'play', quizId: id };
  if (parts.length === 1 && head === 'host') return { page: 'host' };
  if (parts.length === 2 && head === 'host') {
    const token = query.get('key');
    const code = query.get('code');
    const handoff = token && code ? { token, code: normalizeCode(code) } : null;
    return { page: 'console', quizId: id, handoff };
  }
  if (parts.length === 2 && head === 'screen') {
    const code = query.get('code');
    return { page: 'screen', quizId: id, code: code ? normalizeCode(code) : null };
  }
  return { page: 'not_found', path: pathPart };
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** Join codes are case-insensitive and shown upper case, without spaces. */
export function normalizeCode(code: string): string {
  return code.replace(/\s+/g, '').toUpperCase();
}

export const href = {
  home: () => '#/',
  join: (code: string) => `#/join/${encodeURIComponent(code)}`,
  play: (quizId: string) => `#/play/${encodeURIComponent(quizId)}`,
  host: () => '#/host',
  console: (quizId: string) => `#/host/${encodeURIComponent(quizId)}`,
  screen: (quizId: string, code?: string) =>
    `#/screen/${encodeURIComponent(quizId)}${code ? `?code=${encodeURIComponent(code)}` : ''}`,
};

/** The link players join by (and the QR code's target). */
export function joinLink(origin: string, code: string): string {
  return `${origin}/${href.join(code)}`;
}
