import type { ComponentChildren } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import QRCode from 'qrcode';
import { ServerClock, fractionLeft, secondsLeft } from '../lib/clock';
import { ordinal } from '../lib/ranks';
import type { LeaderboardEntry, LobbyPlayer } from '../lib/types';
import { href } from '../lib/route';

export function Header(props: { sub?: ComponentChildren }) {
  return (
    <header class="bar">
      <a href={href.home()}>Podium</a>
      {props.sub ? <span class="sub">{props.sub}</span> : null}
    </header>
  );
}

/** Milliseconds left before a server deadline, ticking. */
export function useRemaining(deadline: number | null, clock: ServerClock): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    if (deadline === null) return;
    const t = setInterval(() => setNow(Date.now()), 200);
    return () => clearInterval(t);
  }, [deadline]);
  return deadline === null ? 0 : clock.remaining(deadline, now);
}

export function Countdown(props: { deadline: number; timeLimitMs: number; clock: ServerClock }) {
  const left = useRemaining(props.deadline, props.clock);
  const secs = secondsLeft(left);
  const pct = Math.round(fractionLeft(left, props.timeLimitMs) * 100);
  return (
    <div class="timer" role="timer" aria-label={`${secs} seconds left`}>
      <div class="track" aria-hidden="true">
        <span style={{ width: `${pct}%` }} />
      </div>
      <span class="secs" aria-hidden="true">{secs}s</span>
    </div>
  );
}

export function FieldErrors(props: { id: string; messages?: string[] }) {
  if (!props.messages?.length) return null;
  return (
    <div id={`${props.id}-error`}>
      {props.messages.map((m) => (
        <p class="field-error">{m}</p>
      ))}
    </div>
  );
}

/** Attributes tying an input to its errors. */
export function invalid(id: string, messages?: string[]) {
  return messages?.length ? { 'aria-invalid': true as const, 'aria-describedby': `${id}-error` } : {};
}

export function PlayerList(props: {
  players: LobbyPlayer[];
  action?: (p: LobbyPlayer) => ComponentChildren;
  label: string;
  /** How many joined, when the server counts them without listing them. */
  count?: number;
}) {
  if (props.players.length === 0) return props.count ? null : <p class="muted">No one has joined yet.</p>;
  return (
    <ul class="players" aria-label={props.label}>
      {props.players.map((p) => (
        <li key={p.player_id} data-player={p.name}>
          <span class={`dot ${p.connected ? 'on' : ''}`} aria-hidden="true" />
          <span>{p.name}</span>
          <span class="visually-hidden">{p.connected ? '(connected)' : '(not connected)'}</span>
          {props.action?.(p)}
        </li>
      ))}
    </ul>
  );
}

const ROW = 56;

/** The top N, each row keyed by player and moved by a CSS transition when ranks change. */
export function Leaderboard(props: { entries: LeaderboardEntry[]; label?: string }) {
  const previous = useRef<Map<string, number>>(new Map());
  const before = previous.current;
  const entries = [...props.entries].sort((a, b) => a.rank - b.rank || (a.name ?? '').localeCompare(b.name ?? ''));
  useEffect(() => {
    previous.current = new Map(entries.map((e, i) => [e.player_id, i]));
  });
  if (entries.length === 0) return <p class="muted">No scores yet.</p>;
  // Rendered in a stable order (by player id) so the DOM nodes stay put and only move by
  // transform: the transition animates the change of rank.
  const position = new Map(entries.map((e, i) => [e.player_id, i]));
  const stable = [...entries].sort((a, b) => (a.player_id < b.player_id ? -1 : 1));
  return (
    <ol class="board" aria-label={props.label ?? 'Leaderboard'} style={{ height: `${entries.length * ROW}px` }}>
      {stable.map((e) => {
        const i = position.get(e.player_id) ?? 0;
        const was = before.get(e.player_id);
        return (
          <li
            key={e.player_id}
            class={was !== undefined && was > i ? 'moved-up' : ''}
            style={{ transform: `translateY(${i * ROW}px)` }}
            aria-setsize={entries.length}
            aria-posinset={i + 1}
          >
            <span>{e.rank}</span>
            <span>{e.name ?? 'Player'}</span>
            <span class="pts">{e.points}</span>
          </li>
        );
      })}
    </ol>
  );
}

export function BarChart(props: { choices: string[]; counts: number[]; correct: number | null; label: string }) {
  const max = Math.max(1, ...props.counts);
  return (
    <ul class="bars" aria-label={props.label}>
      {props.choices.map((c, i) => {
        const n = props.counts[i] ?? 0;
        const right = props.correct === i;
        return (
          <li class={`bar c${i % 6} ${right ? 'right' : ''}`} key={i}>
            <span class="label">
              {c}
              {right ? <span class="visually-hidden"> (correct answer)</span> : null}
            </span>
            <span class="track" aria-hidden="true">
              <span class="fill" style={{ width: `${(n / max) * 100}%`, display: 'block' }} />
            </span>
            <span class="num">
              {n}
              <span class="visually-hidden"> {n === 1 ? 'answer' : 'answers'}</span>
            </span>
          </li>
        );
      })}
    </ul>
  );
}

export function Podium(props: { entries: LeaderboardEntry[]; label?: string }) {
  const top = [...props.entries].sort((a, b) => a.rank - b.rank).slice(0, 3);
  if (top.length === 0) return <p class="muted">No one scored.</p>;
  // Second, first, third from left to right; the list itself stays in rank order for readers.
  const order = [1, 0, 2];
  return (
    <ol class="podium" aria-label={props.label ?? 'Podium'}>
      {top.map((e, i) => (
        <li key={e.player_id} class={`p${i + 1}`} style={{ order: order.indexOf(i) }}>
          <div class="who">{e.name ?? 'Player'}</div>
          <div class="muted">{e.points} points</div>
          <div class="step">
            <span aria-hidden="true">{i + 1}</span>
            <span class="visually-hidden">{ordinal(e.rank)} place</span>
          </div>
        </li>
      ))}
    </ol>
  );
}

export function QrCode(props: { text: string; label: string }) {
  const [svg, setSvg] = useState<string | null>(null);
  useEffect(() => {
    let live = true;
    QRCode.toString(props.text, { type: 'svg', margin: 1, errorCorrectionLevel: 'M' })
      .then((s) => live && setSvg(s))
      .catch(() => live && setSvg(null));
    return () => {
      live = false;
    };
  }, [props.text]);
  return <div class="qr" role="img" aria-label={props.label} dangerouslySetInnerHTML={svg ? { __html: svg } : undefined} />;
}

/** Calls `fn` now and every `ms` while `active`; the latest `fn` is used. */
export function usePolling(fn: (signal: AbortSignal) => Promise<unknown> | void, ms: number, active: boolean) {
  const latest = useRef(fn);
  latest.current = fn;
  useEffect(() => {
    if (!active) return;
    const controller = new AbortController();
    let timer: ReturnType<typeof setTimeout> | null = null;
    const tick = async () => {
      try {
        await latest.current(controller.signal);
      } catch {
        // The caller shows its own errors.
      }
      if (!controller.signal.aborted) timer = setTimeout(tick, ms);
    };
    void tick();
    return () => {
      controller.abort();
      if (timer) clearTimeout(timer);
    };
  }, [active, ms]);
}

export function ErrorBox(props: { message: string | null }) {
  return (
    <div role="alert" aria-live="assertive">
      {props.message ? <div class="alert">{props.message}</div> : null}
    </div>
  );
}
