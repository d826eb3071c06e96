// End-to-end: a host, a big screen and three players play a quiz of three questions through
// the built app, against a running stack. PODIUM_URL: the origin serving the app and the APIs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));
const BASE = (process.env.PODIUM_URL || '').replace(/\/$/, '');
const SHOTS = process.env.PODIUM_SCREENSHOTS || path.join(here, 'screenshots');
// Evaluated through the DevTools protocol, which the app's Content-Security-Policy (no inline
// scripts) does not block, so the pages are checked under the policy they are served with.
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const T = 15_000;

let browser;
const contexts = [];

before(async () => {
  assert.ok(BASE, 'set PODIUM_URL to the origin serving the app and the APIs');
  mkdirSync(SHOTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  for (const c of contexts) await c.close().catch(() => {});
  await browser?.close();
});

async function page(options) {
  const context = await browser.newContext(options);
  contexts.push(context);
  const p = await context.newPage();
  p.setDefaultTimeout(T);
  p.on('pageerror', (e) => console.log(`# page error: ${e.message}`));
  return p;
}
const desktop = (width, height) => page({ viewport: { width, height } });
const phone = () => page({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });

async function shot(p, name) {
  await p.screenshot({ path: path.join(SHOTS, `${name}.png`) });
}

/** Runs axe on the page and fails on serious or critical violations. */
async function axe(p, what) {
  if (!(await p.evaluate(() => 'axe' in window))) await p.evaluate(AXE);
  const result = await p.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 3) }));
  });
  const bad = result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(bad, [], `${what}: accessibility violations ${JSON.stringify(bad, null, 1)}`);
}

async function fillQuestion(host, i, text, choices, right, seconds) {
  const n = i + 1;
  await host.getByLabel(`Question ${n} text`).fill(text);
  for (let j = 2; j < choices.length; j++) {
    await host.getByRole('group', { name: `Question ${n}`, exact: true }).getByRole('button', { name: 'Add choice' }).click();
  }
  for (let j = 0; j < choices.length; j++) await host.getByLabel(`Question ${n}, choice ${j + 1}`, { exact: true }).fill(choices[j]);
  await host.getByLabel(`Question ${n}: choice ${right + 1} is the right answer`).check();
  await host.getByLabel(`Time limit in seconds (question ${n})`).fill(String(seconds));
}

const QUESTIONS = [
  { text: 'Capital of France?', choices: ['Lyon', 'Paris', 'Nice'], right: 1 },
  { text: '2 + 2 = ?', choices: ['3', '4', '5', '22'], right: 1 },
  { text: 'Largest planet?', choices: ['Jupiter', 'Mars'], right: 0 },
];

/** Taps a choice on a player's phone. */
async function tap(p, q, choice) {
  await p.getByRole('heading', { name: q.text }).waitFor();
  await p.getByRole('button', { name: q.choices[choice], exact: true }).tap();
  await p.getByText(/Answer locked in/).waitFor();
}

test('a quiz from creation to podium', { timeout: 180_000 }, async () => {
  const host = await desktop(1280, 800);

  // --- the host creates the quiz, once with a field the API refuses ---
  await host.goto(`${BASE}/#/host`);
  await host.getByRole('heading', { name: 'Create a quiz' }).waitFor();
  await host.getByLabel('Title').fill('E2E quiz');
  await host.getByRole('button', { name: 'Add question' }).click();
  await host.getByRole('button', { name: 'Add question' }).click();
  for (const [i, q] of QUESTIONS.entries()) await fillQuestion(host, i, q.text, q.choices, q.right, i === 1 ? 500 : 60);
  await host.getByRole('button', { name: 'Create quiz' }).click();
  const seconds2 = host.getByLabel('Time limit in seconds (question 2)');
  await host.locator('#q1-seconds-error').getByText('must be from 5 to 120').waitFor();
  assert.equal(await seconds2.getAttribute('aria-invalid'), 'true');
  assert.equal(await host.getByLabel('Time limit in seconds (question 1)').getAttribute('aria-invalid'), null);
  await shot(host, 'host-form');
  await axe(host, 'host form');
  await seconds2.fill('60');
  await host.getByRole('button', { name: 'Create quiz' }).click();
  await host.getByRole('heading', { name: 'Controls' }).waitFor();
  const code = (await host.getByTestId('join-code').textContent()).trim();
  const quizId = decodeURIComponent(host.url().split('#/host/')[1]);
  assert.match(code, /^[A-Z0-9]{6}$/);

  // --- the big screen ---
  const screen = await desktop(1280, 720);
  await screen.goto(`${BASE}/#/screen/${quizId}?code=${code}`);
  await screen.getByTestId('join-code').getByText(code).waitFor();
  await screen.locator('.qr svg').waitFor();

  // --- three players join by the join link ---
  const names = ['Ada', 'Brian', 'Cleo'];
  const players = [];
  for (const [i, name] of names.entries()) {
    const p = await phone();
    await p.goto(`${BASE}/#/join/${code}`);
    if (i === 0) {
      await p.getByLabel('Your name').waitFor();
      assert.equal(await p.getByLabel('Quiz code').inputValue(), code);
      await shot(p, 'player-join');
      await axe(p, 'player join');
    }
    await p.getByLabel('Your name').fill(name);
    await p.getByRole('button', { name: 'Join' }).tap();
    await p.getByRole('heading', { name: `You’re in, ${name}!` }).waitFor();
    players.push(p);
  }
  const [ada, brian, cleo] = players;

  // --- the lobby, on the host, the screen and the players ---
  await host.getByRole('heading', { name: /^Players \(3/ }).waitFor();
  await screen.getByRole('heading', { name: '3 players joined' }).waitFor();
  for (const name of names) {
    await host.getByRole('list', { name: 'Players' }).getByText(name, { exact: true }).waitFor();
    await screen.getByRole('list', { name: 'Players in the lobby' }).getByText(name, { exact: true }).waitFor();
  }
  // Presence: each phone's open stream shows its player as connected.
  await host.getByRole('heading', { name: 'Players (3, 3 connected)' }).waitFor();
  await ada.getByRole('list', { name: 'Players in the lobby' }).getByText('Cleo').waitFor();
  await shot(ada, 'player-lobby');
  await axe(ada, 'player lobby');
  await shot(host, 'host-lobby');
  await axe(host, 'host console in the lobby');
  await shot(screen, 'screen-lobby');
  await axe(screen, 'screen lobby');

  // --- the host kicks Cleo: she is told, and she leaves every list ---
  await host.getByRole('button', { name: 'Kick Cleo' }).click();
  await cleo.getByRole('heading', { name: 'You were removed by the host' }).waitFor();
  await shot(cleo, 'player-kicked');
  await axe(cleo, 'player removed');
  await host.getByRole('heading', { name: /^Players \(2/ }).waitFor();
  await host.getByRole('list', { name: 'Players' }).getByText('Cleo', { exact: true }).waitFor({ state: 'detached' });
  await screen.getByRole('list', { name: 'Players in the lobby' }).getByText('Cleo', { exact: true }).waitFor({ state: 'detached' });
  // A reload does not bring her back: her stored token is refused.
  await cleo.reload();
  await cleo.getByRole('heading', { name: 'You were removed by the host' }).waitFor();

  // --- question 1: lock, start, answer, a reload mid-question, close ---
  await host.getByRole('button', { name: 'Lock joining' }).click();
  await host.getByText('Joining is locked. Ready to start.').waitFor();
  await host.getByRole('button', { name: 'Start question 1' }).click();
  await screen.getByRole('heading', { name: QUESTIONS[0].text }).waitFor();
  await ada.getByRole('heading', { name: QUESTIONS[0].text }).waitFor();
  await ada.getByRole('timer').waitFor();
  await shot(ada, 'player-question');
  await axe(ada, 'player question');
  await shot(screen, 'screen-question');
  await axe(screen, 'screen question');
  await tap(ada, QUESTIONS[0], 1); // right
  await tap(brian, QUESTIONS[0], 0); // wrong
  // Ada reloads mid-question: she is still in, still answered.
  await ada.reload();
  await ada.getByText(/Answer locked in: “Paris”/).waitFor();
  // The host sees the answers come in, per choice; the players never do before the close.
  await host.getByText('2 of', { exact: false }).waitFor();
  assert.equal(await host.getByTestId('answer-count').textContent(), '2');
  assert.equal(await brian.getByRole('list', { name: 'Answers per choice' }).count(), 0);
  await shot(host, 'host-live');
  await axe(host, 'host console with a question open');
  await host.getByRole('button', { name: 'Close question 1' }).click();
  await ada.getByRole('heading', { name: 'Correct!' }).waitFor();
  await brian.getByRole('heading', { name: 'Wrong' }).waitFor();
  await ada.getByText(/Rank: 1st|^1st$/).waitFor();
  await shot(ada, 'player-result');
  await axe(ada, 'player result');
  await screen.getByRole('list', { name: 'Answers per choice' }).waitFor();
  await screen.getByRole('list', { name: 'Top 10' }).getByText('Ada').waitFor();
  await shot(screen, 'screen-reveal');
  await axe(screen, 'screen reveal');
  await host.getByRole('heading', { name: 'Question 1: results' }).waitFor();
  const hostBars = host.getByRole('list', { name: 'Answers per choice' });
  assert.match(await hostBars.innerText(), /Paris[\s\S]*1/);

  // --- question 2: Brian overtakes ---
  await host.getByRole('button', { name: 'Next: question 2' }).click();
  await tap(ada, QUESTIONS[1], 0); // wrong
  await tap(brian, QUESTIONS[1], 1); // right
  await host.getByRole('button', { name: 'Close question 2' }).click();
  await brian.getByRole('heading', { name: 'Correct!' }).waitFor();
  await ada.getByRole('heading', { name: 'Wrong' }).waitFor();
  await screen.getByRole('heading', { name: QUESTIONS[1].text }).waitFor();
  await screen.getByRole('list', { name: 'Top 10' }).getByText('Brian').waitFor();
  await shot(screen, 'screen-leaderboard');
  await shot(brian, 'player-result-2');

  // --- question 3, then finish while it is open ---
  await host.getByRole('button', { name: 'Next: question 3' }).click();
  await tap(ada, QUESTIONS[2], 0);
  await tap(brian, QUESTIONS[2], 0);
  await host.getByRole('button', { name: 'Finish quiz' }).click();
  await host.getByText('The quiz is finished.').waitFor();
  await screen.getByRole('heading', { name: 'Final results' }).waitFor();
  const podium = screen.getByRole('list', { name: 'Podium' });
  await podium.getByText('Ada').waitFor();
  await podium.getByText('Brian').waitFor();
  await shot(screen, 'screen-podium');
  await axe(screen, 'screen podium');
  for (const p of [ada, brian]) {
    await p.getByRole('heading', { name: 'Final results' }).waitFor();
    await p.getByText(/You finished (1st|2nd)/).waitFor();
  }
  await shot(ada, 'player-podium');
  await axe(ada, 'player podium');
  await shot(host, 'host-finished');

  // --- the host's key handed to another browser in a link, as run.sh prints it ---
  const key = await host.evaluate((id) => JSON.parse(localStorage.getItem(`podium:host:${id}`)).token, quizId);
  const laptop = await desktop(1280, 800);
  await laptop.goto(`${BASE}/#/host/${encodeURIComponent(quizId)}?code=${code}&key=${encodeURIComponent(key)}`);
  await laptop.getByText('The quiz is finished.').waitFor();
  assert.ok(!laptop.url().includes('key='), `the key leaves the address bar: ${laptop.url()}`);
});
