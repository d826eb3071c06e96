import { useEffect, useRef, useState } from 'preact/hooks';
import { api } from '../lib/api';
import { ApiError, describeError } from '../lib/problem';
import { href, normalizeCode } from '../lib/route';
import { store } from '../lib/storage';
import { ErrorBox, FieldErrors, Header, invalid } from './common';

export function JoinPage(props: { code?: string }) {
  const [code, setCode] = useState(props.code ?? '');
  const [name, setName] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [fieldErrors, setFieldErrors] = useState<{ code?: string[]; name?: string[] }>({});
  const nameRef = useRef<HTMLInputElement>(null);
  const codeRef = useRef<HTMLInputElement>(null);

  useEffect(() => {
    setCode(props.code ?? '');
    (props.code ? nameRef : codeRef).current?.focus();
  }, [props.code]);

  async function submit(e: Event) {
    e.preventDefault();
    const joinCode = normalizeCode(code);
    const errs: { code?: string[]; name?: string[] } = {};
    if (!joinCode) errs.code = ['Enter the code shown on the big screen.'];
    if (!name.trim()) errs.name = ['Enter a name to play under.'];
    setFieldErrors(errs);
    setError(null);
    if (errs.code || errs.name) {
      (errs.code ? codeRef : nameRef).current?.focus();
      return;
    }
    setBusy(true);
    try {
      const { body } = await api.join(joinCode, name);
      store.forgetPlayer(body.quiz_id);
      store.savePlayer({
        quizId: body.quiz_id,
        playerId: body.player_id,
        token: body.player_token,
        name: body.name,
        joinCode,
      });
      location.hash = href.play(body.quiz_id);
    } catch (err) {
      if (err instanceof ApiError) {
        const p = err.problem;
        if (p.code === 'name_taken') {
          setFieldErrors({ name: [describeError(err)] });
          nameRef.current?.focus();
        } else if (p.code === 'quiz_not_found') {
          setFieldErrors({ code: [describeError(err)] });
          codeRef.current?.focus();
        } else if (p.code === 'validation_failed' && p.errors?.length) {
          const byField: { code?: string[]; name?: string[] } = {};
          for (const fe of p.errors) {
            const key = fe.field === 'join_code' ? 'code' : 'name';
            (byField[key] ??= []).push(fe.message);
          }
          setFieldErrors(byField);
        } else {
          setError(describeError(err));
        }
      } else {
        setError(describeError(err));
      }
    } finally {
      setBusy(false);
    }
  }

  return (
    <>
      <Header />
      <main class="narrow" id="main">
        <h1>Join a quiz</h1>
        <form class="card" onSubmit={submit} noValidate aria-busy={busy}>
          <div class="field">
            <label for="join-code">Quiz code</label>
            <input
              id="join-code"
              ref={codeRef}
              type="text"
              inputMode="text"
              autoComplete="off"
              autoCapitalize="characters"
              spellcheck={false}
              maxLength={12}
              value={code}
              onInput={(e) => setCode(normalizeCode((e.target as HTMLInputElement).value))}
              {...invalid('join-code', fieldErrors.code)}
            />
            <FieldErrors id="join-code" messages={fieldErrors.code} />
          </div>
          <div class="field">
            <label for="join-name">Your name</label>
            <input
              id="join-name"
              ref={nameRef}
              type="text"
              autoComplete="nickname"
              maxLength={24}
              value={name}
              onInput={(e) => setName((e.target as HTMLInputElement).value)}
              {...invalid('join-name', fieldErrors.name)}
            />
            <FieldErrors id="join-name" messages={fieldErrors.name} />
          </div>
          <ErrorBox message={error} />
          <button type="submit" class="big" disabled={busy}>
            {busy ? 'Joining…' : 'Join'}
          </button>
        </form>
        <p class="center">
          <a href={href.host()}>Host a quiz</a>
        </p>
      </main>
    </>
  );
}
