import { useEffect, useState } from 'preact/hooks';
import { lastClosed, lobbyPlayers } from '../lib/dashboard';
import { joinLink } from '../lib/route';
import { BarChart, Countdown, Header, Leaderboard, PlayerList, Podium, QrCode } from './common';
import { useDashboard } from './host';

export function ScreenPage(props: { quizId: string; code: string | null }) {
  const { state, clock, live, phase } = useDashboard(props.quizId);
  const quiz = state.quiz;
  const code = props.code ?? quiz?.join_code ?? null;
  const { players, count } = lobbyPlayers(state);
  const closed = lastClosed(quiz);
  const current = quiz?.current ?? null;

  // Announce phase changes once, politely.
  const [said, setSaid] = useState('');
  useEffect(() => {
    if (phase === 'question' && current) setSaid(`Question ${current.number}: ${current.text}`);
    else if (phase === 'reveal' && closed) setSaid(`Question ${closed.number} closed. The answer: ${closed.choices[closed.correct_choice]}`);
    else if (phase === 'finished') setSaid('The quiz is finished.');
  }, [phase, current?.number, closed?.number]);

  return (
    <div class="screen">
      <Header sub={quiz?.title ?? ''} />
      <main class="wide" id="main">
        <div class="visually-hidden" role="status" aria-live="polite">
          {said}
        </div>
        {!live && phase === 'loading' ? <p role="status">Connecting…</p> : null}

        {phase === 'lobby' ? (
          <section aria-labelledby="screen-join">
            <div class="join-big">
              <div>
                <h1 id="screen-join">{quiz?.title ?? 'Join the quiz'}</h1>
                {code ? (
                  <>
                    <p class="muted">Go to {location.host} and enter the code</p>
                    <p class="code" aria-label={`Join code ${code.split('').join(' ')}`} data-testid="join-code">
                      {code}
                    </p>
                  </>
                ) : (
                  <p class="muted">Ask the host for the join code.</p>
                )}
                <h2 aria-live="polite">
                  {count} {count === 1 ? 'player' : 'players'} joined
                </h2>
              </div>
              {code ? <QrCode text={joinLink(location.origin, code)} label={`QR code: join link for code ${code}`} /> : null}
            </div>
            <PlayerList players={players} count={count} label="Players in the lobby" />
          </section>
        ) : null}

        {phase === 'question' && current ? (
          <section aria-labelledby="screen-question">
            <p class="muted">
              Question {current.number} of {quiz?.question_count}
            </p>
            <h1 id="screen-question" class="question-text">
              {current.text}
            </h1>
            <Countdown deadline={current.deadline} timeLimitMs={current.time_limit_ms} clock={clock} />
            <ul class="choices" aria-label="Choices">
              {current.choices.map((c, i) => (
                <li key={i} class={`choice c${i % 6}`}>
                  <span class="key" aria-hidden="true">
                    {String.fromCharCode(65 + i)}
                  </span>
                  <span>{c}</span>
                </li>
              ))}
            </ul>
          </section>
        ) : null}

        {phase === 'reveal' && closed ? (
          <div class="two">
            <section aria-labelledby="screen-reveal">
              <p class="muted">Question {closed.number}</p>
              <h1 id="screen-reveal">{closed.text}</h1>
              <BarChart choices={closed.choices} counts={closed.stats.per_choice} correct={closed.correct_choice} label="Answers per choice" />
              <p>
                The answer: <strong>{closed.choices[closed.correct_choice]}</strong> · {closed.stats.correct} of {closed.stats.answers} right
              </p>
            </section>
            <section aria-labelledby="screen-board">
              <h2 id="screen-board">Top 10</h2>
              <Leaderboard entries={state.leaderboard.slice(0, 10)} label="Top 10" />
            </section>
          </div>
        ) : null}

        {phase === 'finished' ? (
          <section aria-labelledby="screen-final">
            <h1 id="screen-final" class="center">
              Final results
            </h1>
            <Podium entries={state.leaderboard} label="Podium" />
          </section>
        ) : null}
      </main>
    </div>
  );
}
