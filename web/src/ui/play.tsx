import { useEffect, useMemo, useReducer, useRef, useState } from 'preact/hooks';
import { api, playerEventsUrl } from '../lib/api';
import { ServerClock } from '../lib/clock';
import { initialPlayer, persistable, playerReducer, playerView, type PlayerEvent, type PlayerState } from '../lib/player';
import { ApiError, describeError } from '../lib/problem';
import { ordinal, rankChange } from '../lib/ranks';
import { href } from '../lib/route';
import { LiveStream } from '../lib/sse';
import { store, type PlayerSession } from '../lib/storage';
import type { AnswerResult, LeaderboardEntry, Lobby, OpenQuestion } from '../lib/types';
import { Countdown, ErrorBox, Header, PlayerList, Podium } from './common';

const PLAYER_EVENTS = ['snapshot', 'question_started', 'question_closed', 'question_result', 'rank', 'quiz_finished', 'kicked', 'lobby'] as const;

/** Gone for good: the token no longer opens this quiz. */
function isFatal(err: unknown): boolean {
  return err instanceof ApiError && ['invalid_token', 'not_this_player', 'player_not_found', 'quiz_not_found'].includes(err.code);
}

export function PlayPage(props: { quizId: string }) {
  const { quizId } = props;
  const session = useMemo(() => store.player(quizId), [quizId]);
  if (!session) {
    return (
      <>
        <Header />
        <main class="narrow" id="main">
          <h1>Not joined</h1>
          <p>This browser has not joined this quiz.</p>
          <a class="button" href={href.home()}>
            Join a quiz
          </a>
        </main>
      </>
    );
  }
  return <Play session={session} />;
}

function Play({ session }: { session: PlayerSession }) {
  const { quizId } = session;
  const resume = useMemo(() => store.resume<PlayerState>(quizId), [quizId]);
  const [state, dispatch] = useReducer(playerReducer, resume?.state ? { ...initialPlayer, ...resume.state } : initialPlayer);
  const clock = useMemo(() => new ServerClock(), []);
  const stream = useRef<LiveStream | null>(null);
  const [fatal, setFatal] = useState<string | null>(null);
  const [connection, setConnection] = useState<'connecting' | 'live' | 'retrying'>('connecting');

  const observe = (q: OpenQuestion | null | undefined) => {
    if (q) clock.observe(q.deadline, q.remaining_ms, Date.now());
  };

  /** Rejoins with the stored token: is this player still in the quiz? */
  async function rejoin(): Promise<'ok' | 'kicked' | 'gone' | 'unknown'> {
    try {
      await api.join(session.joinCode, session.name, session.token);
      return 'ok';
    } catch (err) {
      if (err instanceof ApiError && err.code === 'player_kicked') return 'kicked';
      if (isFatal(err)) {
        setFatal(describeError(err));
        return 'gone';
      }
      return 'unknown';
    }
  }

  useEffect(() => {
    let cancelled = false;
    void (async () => {
      const outcome = await rejoin();
      if (cancelled) return;
      if (outcome === 'kicked') {
        dispatch({ type: 'kicked' });
        return;
      }
      if (outcome === 'gone') return;
      // The server's clock, even when the stream resumes without a snapshot.
      api.quiz(quizId).then((q) => observe(q.current), () => undefined);
      stream.current = new LiveStream({
        url: (last) => playerEventsUrl(quizId, session.playerId, session.token, last),
        lastEventId: resume?.lastEventId ?? null,
        events: PLAYER_EVENTS,
        onOpen: () => setConnection('live'),
        onRetrying: () => setConnection('retrying'),
        onEvent: (name, data) => {
          if (name === 'lobby') {
            dispatch({ type: 'players', data: data as Lobby });
            return;
          }
          if (name === 'snapshot') observe((data as { quiz: { current: OpenQuestion | null } }).quiz.current);
          if (name === 'question_started') observe(data as OpenQuestion);
          if (name === 'kicked') {
            stream.current?.close();
            dispatch({ type: 'kicked' });
            return;
          }
          dispatch({ type: name, data } as PlayerEvent);
        },
        onClosed: async () => {
          setConnection('retrying');
          const outcome = await rejoin();
          if (outcome === 'kicked') dispatch({ type: 'kicked' });
          return outcome === 'ok' || outcome === 'unknown';
        },
      });
    })();
    return () => {
      cancelled = true;
      stream.current?.close();
      stream.current = null;
    };
  }, [quizId]);

  // Where the stream stood, for a reload.
  useEffect(() => {
    const last = stream.current?.lastEventId;
    if (last && state.status !== 'connecting') {
      store.saveResume(quizId, { lastEventId: last, state: persistable(state), savedAt: Date.now() });
    }
  }, [state]);

  const view = playerView(state);

  async function answer(question: number, choice: number) {
    dispatch({ type: 'answer_sent', question, choice });
    const key = `${session.playerId}-q${question}`;
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const { body } = await api.answer(quizId, question, choice, session.token, key);
        dispatch({ type: 'answer_ok', data: body });
        return;
      } catch (err) {
        if (err instanceof ApiError) {
          if (err.code === 'already_answered' && err.problem.original) {
            dispatch({ type: 'answer_ok', data: err.problem.original as AnswerResult });
            return;
          }
          if (err.code === 'player_kicked') {
            stream.current?.close();
            dispatch({ type: 'kicked' });
            return;
          }
          const retry = err.code === 'network_error' || err.status === 503 || err.status === 429;
          if (retry && attempt < 2) {
            await new Promise((r) => setTimeout(r, 700 * (attempt + 1)));
            continue;
          }
          const keep = ['question_closed', 'question_not_active', 'quiz_finished'].includes(err.code);
          dispatch({ type: 'answer_failed', question, message: describeError(err), keep });
          return;
        }
        dispatch({ type: 'answer_failed', question, message: describeError(err) });
        return;
      }
    }
  }

  if (fatal) {
    return (
      <Shell session={session}>
        <h1>Can’t continue</h1>
        <ErrorBox message={fatal} />
        <a class="button" href={href.join(session.joinCode)}>
          Join again
        </a>
      </Shell>
    );
  }

  return (
    <Shell session={session}>
      {connection === 'retrying' && view !== 'kicked' ? (
        <p class="notice" role="status">
          Reconnecting…
        </p>
      ) : null}
      {view === 'connecting' ? <p role="status">Connecting…</p> : null}
      {view === 'kicked' ? <Kicked /> : null}
      {view === 'lobby' ? <PlayerLobby state={state} session={session} /> : null}
      {view === 'question' || view === 'answered' ? (
        <Question state={state} clock={clock} onAnswer={answer} />
      ) : null}
      {view === 'result' ? <Result state={state} /> : null}
      {view === 'waiting' ? <p role="status">Waiting for the next question…</p> : null}
      {view === 'finished' ? <Final state={state} session={session} /> : null}
    </Shell>
  );
}

function Shell(props: { session: PlayerSession; children: preact.ComponentChildren }) {
  return (
    <>
      <Header sub={<span>{props.session.name}</span>} />
      <main class="narrow" id="main">
        {props.children}
      </main>
    </>
  );
}

function Kicked() {
  return (
    <section class="card" aria-labelledby="kicked-title" role="alert">
      <h1 id="kicked-title">You were removed by the host</h1>
      <p>The host removed you from this quiz, so you can’t answer any more.</p>
      <a class="button secondary" href={href.home()}>
        Back to the start
      </a>
    </section>
  );
}

function PlayerLobby({ state, session }: { state: PlayerState; session: PlayerSession }) {
  const players = [...(state.lobby?.players ?? [])].sort((a, b) => a.joined_at - b.joined_at);
  const count = state.lobby?.player_count ?? state.playerCount;
  return (
    <section aria-labelledby="lobby-title">
      <h1 id="lobby-title">You’re in, {session.name}!</h1>
      <p class="notice" role="status">
        Waiting for the host to start{state.title ? ` “${state.title}”` : ''}.
      </p>
      <h2>
        {count} {count === 1 ? 'player' : 'players'} here
      </h2>
      <div aria-live="polite">
        <PlayerList players={players} count={count} label="Players in the lobby" />
      </div>
    </section>
  );
}

function Question(props: { state: PlayerState; clock: ServerClock; onAnswer: (q: number, c: number) => void }) {
  const q = props.state.current!;
  const mine = props.state.answers[String(q.number)];
  const heading = useRef<HTMLHeadingElement>(null);
  useEffect(() => heading.current?.focus(), [q.number]);
  return (
    <section aria-labelledby="question-text">
      <p class="muted">
        Question {q.number}
        {props.state.questionCount ? ` of ${props.state.questionCount}` : ''} · {q.points} points
      </p>
      <h1 id="question-text" tabIndex={-1} ref={heading}>
        {q.text}
      </h1>
      <Countdown deadline={q.deadline} timeLimitMs={q.time_limit_ms} clock={props.clock} />
      <ul class="choices" aria-label="Choices">
        {q.choices.map((c, i) => (
          <li key={i}>
            <button
              type="button"
              class={`choice c${i % 6}`}
              aria-pressed={mine?.choice === i}
              disabled={Boolean(mine)}
              onClick={() => props.onAnswer(q.number, i)}
            >
              <span class="key" aria-hidden="true">
                {String.fromCharCode(65 + i)}
              </span>
              <span>{c}</span>
            </button>
          </li>
        ))}
      </ul>
      <div role="status" aria-live="polite">
        {mine ? (
          mine.error ? (
            <p class="alert">{mine.error}</p>
          ) : (
            <p class="notice">
              {mine.pending ? 'Sending your answer…' : `Answer locked in: “${q.choices[mine.choice]}”. Waiting for the others…`}
            </p>
          )
        ) : null}
      </div>
    </section>
  );
}

function Result({ state }: { state: PlayerState }) {
  const r = state.result!;
  const move = rankChange(state.rankBefore, state.rank);
  const verdict = !r.answered ? 'No answer' : r.correct ? 'Correct!' : 'Wrong';
  return (
    <section aria-labelledby="result-title" aria-live="polite">
      <p class="muted">Question {r.question.number}</p>
      <h1 id="result-title" class={`verdict ${r.answered && r.correct ? 'ok' : 'bad'}`}>
        {verdict}
      </h1>
      <p>
        The answer was <strong>{r.question.choices[r.question.correct_choice]}</strong>.
        {r.answered && r.choice !== null && !r.correct ? (
          <>
            {' '}
            You chose “{r.question.choices[r.choice]}”.
          </>
        ) : null}
      </p>
      <div class="card">
        <span class="stat">
          <b>+{r.points}</b> points
        </span>
        {r.streakBonus > 0 ? (
          <span class="stat">
            <b>+{r.streakBonus}</b> streak bonus
          </span>
        ) : null}
        {r.streak > 0 ? (
          <span class="stat">
            <b>{r.streak}</b> in a row
          </span>
        ) : null}
        <span class="stat">
          <b>{state.you?.points ?? 0}</b> total
        </span>
      </div>
      <p class={`rank-move ${move.movement}`} aria-label={move.spoken}>
        {move.movement === 'none' ? move.text : `Rank: ${move.text}`}
      </p>
      <p class="muted">Waiting for the next question…</p>
    </section>
  );
}

function Final({ state, session }: { state: PlayerState; session: PlayerSession }) {
  const [top, setTop] = useState<LeaderboardEntry[]>([]);
  const [me, setMe] = useState(state.you);
  useEffect(() => {
    const c = new AbortController();
    api.leaderboard(session.quizId, 3, c.signal).then((b) => setTop(b.entries), () => undefined);
    api.player(session.quizId, session.playerId, c.signal).then(setMe, () => undefined);
    return () => c.abort();
  }, [session.quizId]);
  return (
    <section aria-labelledby="final-title" class="light">
      <h1 id="final-title">Final results</h1>
      <Podium entries={top} label="Top three" />
      <p class="rank-move" role="status">
        {me?.rank ? `You finished ${ordinal(me.rank)} with ${me.points} points` : 'Thanks for playing!'}
      </p>
    </section>
  );
}
