import { useEffect, useMemo, useReducer, useRef, useState } from 'preact/hooks';
import { api, quizEventsUrl } from '../lib/api';
import { dashboardReducer, initialDashboard, lastClosed, lobbyPlayers, nextQuestion, phaseOf, type DashboardEvent } from '../lib/dashboard';
import {
  LIMITS,
  addChoice,
  emptyQuestion,
  emptyQuiz,
  fieldIds,
  firstErrorField,
  groupErrors,
  removeChoice,
  removeQuestion,
  toDraft,
  updateQuestion,
  type FormErrors,
  type QuestionForm,
  type QuizForm,
} from '../lib/draft';
import { ApiError, describeError, isMissingEndpoint } from '../lib/problem';
import { type Handoff, href, joinLink } from '../lib/route';
import { LiveStream } from '../lib/sse';
import { store, type HostSession } from '../lib/storage';
import type { LiveCounts, QuizStatus } from '../lib/types';
import { BarChart, Countdown, ErrorBox, FieldErrors, Header, Leaderboard, PlayerList, invalid, usePolling } from './common';
import { ServerClock } from '../lib/clock';

export const DASHBOARD_EVENTS = ['snapshot', 'question_started', 'question_closed', 'leaderboard', 'quiz_finished', 'lobby'] as const;

// --- create ---

export function CreatePage() {
  const [form, setForm] = useState<QuizForm>(emptyQuiz);
  const [errors, setErrors] = useState<FormErrors>({ byField: {}, general: [] });
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(e: Event) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const created = await api.createQuiz(toDraft(form));
      store.saveHost({
        quizId: created.quiz_id,
        token: created.host_token,
        joinCode: created.join_code,
        title: created.title,
        questions: created.questions,
      });
      location.hash = href.console(created.quiz_id);
    } catch (err) {
      if (err instanceof ApiError && err.code === 'validation_failed') {
        const grouped = groupErrors(err.problem.errors);
        setErrors(grouped);
        setError(`Please fix the ${err.problem.errors?.length ?? ''} problem${err.problem.errors?.length === 1 ? '' : 's'} marked below.`);
        const first = firstErrorField(form, grouped);
        if (first) setTimeout(() => document.getElementById(first)?.focus(), 0);
      } else {
        setErrors({ byField: {}, general: [] });
        setError(describeError(err));
      }
    } finally {
      setBusy(false);
    }
  }

  const setQuestion = (i: number, q: QuestionForm) => setForm((f) => updateQuestion(f, i, q));

  return (
    <>
      <Header sub="Host" />
      <main id="main">
        <h1>Create a quiz</h1>
        <form onSubmit={submit} noValidate aria-busy={busy}>
          <div class="field card">
            <label for={fieldIds.title()}>Title</label>
            <input
              id={fieldIds.title()}
              type="text"
              value={form.title}
              onInput={(e) => setForm((f) => ({ ...f, title: (e.target as HTMLInputElement).value }))}
              {...invalid(fieldIds.title(), errors.byField[fieldIds.title()])}
            />
            <FieldErrors id={fieldIds.title()} messages={errors.byField[fieldIds.title()]} />
          </div>
          <div id={fieldIds.questions()} tabIndex={-1}>
            <FieldErrors id={fieldIds.questions()} messages={errors.byField[fieldIds.questions()]} />
          </div>
          {form.questions.map((q, i) => (
            <QuestionFields
              key={q.id}
              index={i}
              q={q}
              errors={errors}
              canRemove={form.questions.length > 1}
              onChange={(next) => setQuestion(i, next)}
              onRemove={() => setForm((f) => removeQuestion(f, i))}
            />
          ))}
          <div class="row">
            <button
              type="button"
              class="secondary"
              disabled={form.questions.length >= LIMITS.questions.max}
              onClick={() => setForm((f) => ({ ...f, questions: [...f.questions, emptyQuestion()] }))}
            >
              Add question
            </button>
            <span class="grow" />
            <button type="submit" disabled={busy}>
              {busy ? 'Creating…' : 'Create quiz'}
            </button>
          </div>
          <ErrorBox message={error} />
          {errors.general.length ? (
            <ul class="alert">
              {errors.general.map((m) => (
                <li>{m}</li>
              ))}
            </ul>
          ) : null}
        </form>
      </main>
    </>
  );
}

function QuestionFields(props: {
  index: number;
  q: QuestionForm;
  errors: FormErrors;
  canRemove: boolean;
  onChange: (q: QuestionForm) => void;
  onRemove: () => void;
}) {
  const { index: i, q, errors } = props;
  const ids = {
    text: fieldIds.text(i),
    choices: fieldIds.choices(i),
    correct: fieldIds.correct(i),
    points: fieldIds.points(i),
    seconds: fieldIds.seconds(i),
  };
  const err = (id: string) => errors.byField[id];
  return (
    <fieldset>
      <legend>Question {i + 1}</legend>
      <div class="field">
        <label for={ids.text}>Question {i + 1} text</label>
        <textarea
          id={ids.text}
          rows={2}
          value={q.text}
          onInput={(e) => props.onChange({ ...q, text: (e.target as HTMLTextAreaElement).value })}
          {...invalid(ids.text, err(ids.text))}
        />
        <FieldErrors id={ids.text} messages={err(ids.text)} />
      </div>
      <fieldset id={ids.choices} tabIndex={-1} aria-describedby={[err(ids.choices) ? `${ids.choices}-error` : '', err(ids.correct) ? `${ids.correct}-error` : ''].filter(Boolean).join(' ') || undefined}>
        <legend>Choices of question {i + 1} (select the right one)</legend>
        {q.choices.map((c, j) => {
          const id = fieldIds.choice(i, j);
          return (
            <div key={c.id}>
              <div class="choice-row">
                <input
                  type="radio"
                  id={`${id}-right`}
                  name={`q${i}-right`}
                  checked={q.correct === j}
                  onChange={() => props.onChange({ ...q, correct: j })}
                  aria-label={`Question ${i + 1}: choice ${j + 1} is the right answer`}
                  {...(j === 0 ? { id: ids.correct } : {})}
                />
                <input
                  id={id}
                  type="text"
                  aria-label={`Question ${i + 1}, choice ${j + 1}`}
                  value={c.text}
                  onInput={(e) =>
                    props.onChange({
                      ...q,
                      choices: q.choices.map((x, k) => (k === j ? { ...x, text: (e.target as HTMLInputElement).value } : x)),
                    })
                  }
                  {...invalid(id, err(id))}
                />
                <button
                  type="button"
                  class="danger small"
                  disabled={q.choices.length <= LIMITS.choices.min}
                  onClick={() => props.onChange(removeChoice(q, j))}
                  aria-label={`Remove choice ${j + 1} of question ${i + 1}`}
                >
                  Remove
                </button>
              </div>
              <FieldErrors id={id} messages={err(id)} />
            </div>
          );
        })}
        <FieldErrors id={ids.choices} messages={err(ids.choices)} />
        <FieldErrors id={ids.correct} messages={err(ids.correct)} />
        <button
          type="button"
          class="secondary small"
          disabled={q.choices.length >= LIMITS.choices.max}
          onClick={() => props.onChange(addChoice(q))}
        >
          Add choice
        </button>
      </fieldset>
      <div class="nums">
        <div class="field">
          <label for={ids.points}>Points (question {i + 1})</label>
          <input
            id={ids.points}
            type="number"
            inputMode="numeric"
            value={q.points}
            onInput={(e) => props.onChange({ ...q, points: (e.target as HTMLInputElement).value })}
            {...invalid(ids.points, err(ids.points))}
          />
          <FieldErrors id={ids.points} messages={err(ids.points)} />
        </div>
        <div class="field">
          <label for={ids.seconds}>Time limit in seconds (question {i + 1})</label>
          <input
            id={ids.seconds}
            type="number"
            inputMode="numeric"
            value={q.seconds}
            onInput={(e) => props.onChange({ ...q, seconds: (e.target as HTMLInputElement).value })}
            {...invalid(ids.seconds, err(ids.seconds))}
          />
          <FieldErrors id={ids.seconds} messages={err(ids.seconds)} />
        </div>
      </div>
      {props.canRemove ? (
        <button type="button" class="danger small" onClick={props.onRemove}>
          Remove question {i + 1}
        </button>
      ) : null}
    </fieldset>
  );
}

// --- console ---

export function useDashboard(quizId: string) {
  const [state, dispatch] = useReducer(dashboardReducer, initialDashboard);
  const clock = useMemo(() => new ServerClock(), []);
  const [live, setLive] = useState(false);
  useEffect(() => {
    const stream = new LiveStream({
      url: (last) => quizEventsUrl(quizId, last),
      events: DASHBOARD_EVENTS,
      onOpen: () => setLive(true),
      onRetrying: () => setLive(false),
      onClosed: () => {
        setLive(false);
        return true;
      },
      onEvent: (name, data) => {
        const now = Date.now();
        if (name === 'snapshot') {
          const cur = (data as { quiz: { current: { deadline: number; remaining_ms: number } | null } }).quiz.current;
          if (cur) clock.observe(cur.deadline, cur.remaining_ms, now);
        }
        if (name === 'question_started') {
          const q = data as { deadline: number; remaining_ms: number };
          clock.observe(q.deadline, q.remaining_ms, now);
        }
        dispatch({ type: name, data } as DashboardEvent);
      },
    });
    return () => stream.close();
  }, [quizId]);

  // Players: from `lobby` events; polled on servers without them.
  const [playersMissing, setPlayersMissing] = useState(false);
  const phase = phaseOf(state.quiz);
  usePolling(
    async (signal) => {
      if (!playersMissing) {
        try {
          dispatch({ type: 'players', data: await api.players(quizId, signal) });
          return;
        } catch (err) {
          if (!isMissingEndpoint(err)) throw err;
          setPlayersMissing(true);
        }
      }
      dispatch({ type: 'quiz', data: await api.quiz(quizId, signal) });
    },
    2000,
    !state.lobbyLive && (phase === 'lobby' || phase === 'loading'),
  );
  return { state, dispatch, clock, live, phase };
}

export function ConsolePage(props: { quizId: string; handoff: Handoff | null }) {
  const host = useMemo(() => {
    const { quizId, handoff } = props;
    if (handoff) {
      // Keep the key in this browser, and take it out of the address bar and the history.
      store.saveHost({ quizId, token: handoff.token, joinCode: handoff.code, title: '', questions: 0 });
      history.replaceState(null, '', href.console(quizId));
    }
    return store.host(quizId);
  }, [props.quizId, props.handoff]);
  if (!host) {
    return (
      <>
        <Header sub="Host" />
        <main id="main" class="narrow">
          <h1>No host key</h1>
          <p>This browser did not create this quiz, so it cannot run it.</p>
          <a class="button" href={href.host()}>
            Create a quiz
          </a>
        </main>
      </>
    );
  }
  return <Console host={host} />;
}

function Console({ host }: { host: HostSession }) {
  const { quizId, token, joinCode } = host;
  const { state, dispatch, clock, live, phase } = useDashboard(quizId);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [announce, setAnnounce] = useState('');
  const [counts, setCounts] = useState<LiveCounts | null>(null);
  const [countsMissing, setCountsMissing] = useState(false);
  const quiz = state.quiz;
  const current = quiz?.current ?? null;
  const next = nextQuestion(quiz);
  const link = joinLink(location.origin, joinCode);
  const { players, count, connected } = lobbyPlayers(state);
  const locked = Boolean(quiz?.joining_locked_at);

  async function run(label: string, command: () => Promise<QuizStatus>) {
    setBusy(true);
    setError(null);
    try {
      const status = await command();
      dispatch({ type: 'status', data: status });
      setAnnounce(label);
    } catch (err) {
      setError(describeError(err));
    } finally {
      setBusy(false);
    }
  }

  async function kick(playerId: string, name: string) {
    setError(null);
    try {
      await api.kick(quizId, playerId, token);
      setAnnounce(`${name} was removed`);
      // Until the lobby event says so.
      if (!state.lobbyLive) dispatch({ type: 'players', data: await api.players(quizId) });
    } catch (err) {
      setError(isMissingEndpoint(err) ? 'Removing players is not available on this server yet.' : describeError(err));
    }
  }

  // Live answer counts while a question is open.
  const openNumber = phase === 'question' ? (current?.number ?? null) : null;
  useEffect(() => setCounts(null), [openNumber]);
  usePolling(
    async (signal) => {
      if (openNumber === null) return;
      try {
        setCounts(await api.live(quizId, openNumber, token, signal));
      } catch (err) {
        if (isMissingEndpoint(err)) setCountsMissing(true);
      }
    },
    1000,
    openNumber !== null && !countsMissing,
  );

  const closed = lastClosed(quiz);
  const heading = useRef<HTMLHeadingElement>(null);

  return (
    <div class="host">
      <Header sub={<span>Host · {quiz?.title ?? host.title}</span>} />
      <main id="main">
        <h1 ref={heading}>{quiz?.title ?? host.title}</h1>
        <div class="visually-hidden" role="status" aria-live="polite">
          {announce}
        </div>
        {!live ? (
          <p class="notice" role="status">
            Connecting to the live feed…
          </p>
        ) : null}
        <div class="console-grid">
          <section class="card" aria-labelledby="join-title">
            <h2 id="join-title">Join</h2>
            <p>
              Code: <span class="join-code" data-testid="join-code">{joinCode}</span>
            </p>
            <p>
              Join link: <a href={link}>{link}</a>
            </p>
            <p>
              <a href={href.screen(quizId, joinCode)} target="_blank" rel="noopener">
                Open the big screen
              </a>
            </p>
          </section>
          <section class="card" aria-labelledby="controls-title">
            <h2 id="controls-title">Controls</h2>
            <p role="status">
              {phase === 'lobby' && (locked ? 'Joining is locked. Ready to start.' : 'Lobby: players are joining.')}
              {phase === 'question' && current && `Question ${current.number} of ${quiz?.question_count} is open.`}
              {phase === 'reveal' && closed && `Question ${closed.number} is closed.`}
              {phase === 'finished' && 'The quiz is finished.'}
              {phase === 'loading' && 'Loading…'}
            </p>
            {phase === 'question' && current ? <Countdown deadline={current.deadline} timeLimitMs={current.time_limit_ms} clock={clock} /> : null}
            <div class="controls">
              {phase !== 'finished' && !locked ? (
                <button type="button" class="secondary" disabled={busy} onClick={() => run('Joining locked', () => api.lock(quizId, token))}>
                  Lock joining
                </button>
              ) : null}
              {phase === 'question' && current ? (
                <button type="button" disabled={busy} onClick={() => run(`Question ${current.number} closed`, () => api.close(quizId, current.number, token))}>
                  Close question {current.number}
                </button>
              ) : null}
              {(phase === 'lobby' || phase === 'reveal') && next !== null ? (
                <button type="button" disabled={busy} onClick={() => run(`Question ${next} started`, () => api.start(quizId, next, token))}>
                  {phase === 'lobby' ? `Start question ${next}` : `Next: question ${next}`}
                </button>
              ) : null}
              {phase !== 'finished' && phase !== 'loading' ? (
                <button type="button" class="danger" disabled={busy} onClick={() => run('Quiz finished', () => api.finish(quizId, token))}>
                  Finish quiz
                </button>
              ) : null}
            </div>
            <ErrorBox message={error} />
          </section>
        </div>

        {phase === 'question' && current ? (
          <section class="card" aria-labelledby="live-title">
            <h2 id="live-title">Live answers: question {current.number}</h2>
            <p>{current.text}</p>
            {countsMissing ? (
              <p class="muted">Live counts are not available on this server.</p>
            ) : (
              <>
                <p aria-live="polite">
                  <strong data-testid="answer-count">{counts?.answers ?? 0}</strong> of {count} players answered
                </p>
                <BarChart choices={current.choices} counts={counts?.per_choice ?? []} correct={null} label="Answers per choice so far" />
              </>
            )}
          </section>
        ) : null}

        {phase === 'reveal' && closed ? (
          <section class="card" aria-labelledby="reveal-title">
            <h2 id="reveal-title">Question {closed.number}: results</h2>
            <p>{closed.text}</p>
            <BarChart choices={closed.choices} counts={closed.stats.per_choice} correct={closed.correct_choice} label="Answers per choice" />
            <p>
              {closed.stats.correct} of {closed.stats.answers} answered correctly.
            </p>
          </section>
        ) : null}

        <div class="console-grid">
          <section class="card" aria-labelledby="players-title">
            <h2 id="players-title">
              Players ({count}
              {connected !== null ? `, ${connected} connected` : ''})
            </h2>
            <PlayerList
              players={players}
              count={count}
              label="Players"
              action={(p) =>
                phase !== 'finished' ? (
                  <button type="button" class="danger small" onClick={() => kick(p.player_id, p.name)} aria-label={`Kick ${p.name}`}>
                    Kick
                  </button>
                ) : null
              }
            />
            {state.lobby?.truncated ? <p class="muted">Only the first players are listed.</p> : null}
          </section>
          <section class="card" aria-labelledby="board-title">
            <h2 id="board-title">Leaderboard</h2>
            <BoardTable entries={state.leaderboard} />
          </section>
        </div>
      </main>
    </div>
  );
}

function BoardTable({ entries }: { entries: { rank: number; player_id: string; name: string | null; points: number }[] }) {
  if (!entries.length) return <p class="muted">No scores yet.</p>;
  return (
    <table>
      <caption class="visually-hidden">Top 10</caption>
      <thead>
        <tr>
          <th scope="col" class="num">
            Rank
          </th>
          <th scope="col">Name</th>
          <th scope="col" class="num">
            Points
          </th>
        </tr>
      </thead>
      <tbody>
        {entries.slice(0, 10).map((e) => (
          <tr key={e.player_id}>
            <td class="num">{e.rank}</td>
            <td>{e.name ?? 'Player'}</td>
            <td class="num">{e.points}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export { Leaderboard };
