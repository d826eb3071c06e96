// The host's quiz form, the draft it sends, and the mapping of the API's field errors back to
// the form's fields.
import type { FieldError } from './problem';

export const LIMITS = {
  choices: { min: 2, max: 6 },
  questions: { min: 1, max: 100 },
  points: { min: 0, max: 10_000, default: 1000 },
  seconds: { min: 5, max: 120, default: 20 },
} as const;

export interface ChoiceForm {
  id: string;
  text: string;
}

export interface QuestionForm {
  id: string;
  text: string;
  choices: ChoiceForm[];
  /** Index of the right choice. */
  correct: number;
  /** As typed. */
  points: string;
  seconds: string;
}

export interface QuizForm {
  title: string;
  questions: QuestionForm[];
}

export interface QuestionDraftBody {
  text: string;
  choices: string[];
  correct_choice: number;
  points?: number;
  time_limit_seconds?: number;
}

export interface QuizDraftBody {
  title: string;
  questions: QuestionDraftBody[];
}

let counter = 0;
export function newId(prefix = 'f'): string {
  counter += 1;
  return `${prefix}${counter}`;
}

export function emptyQuestion(): QuestionForm {
  return {
    id: newId('q'),
    text: '',
    choices: [
      { id: newId('c'), text: '' },
      { id: newId('c'), text: '' },
    ],
    correct: 0,
    points: String(LIMITS.points.default),
    seconds: String(LIMITS.seconds.default),
  };
}

export function emptyQuiz(): QuizForm {
  return { title: '', questions: [emptyQuestion()] };
}

/**
 * A number field as the API wants it: absent when blank (the server's default applies), the
 * integer when it is one, and otherwise NaN... which JSON cannot carry, so non-numbers are sent
 * as-is for the server to name the field.
 */
function numberField(raw: string): number | undefined {
  const t = raw.trim();
  if (t === '') return undefined;
  const n = Number(t);
  return Number.isFinite(n) ? Math.trunc(n) : Number.NaN;
}

/** The body of POST /v1/quizzes for a form. Texts go as typed: the server trims and checks. */
export function toDraft(form: QuizForm): QuizDraftBody {
  return {
    title: form.title,
    questions: form.questions.map((q) => {
      const body: QuestionDraftBody = {
        text: q.text,
        choices: q.choices.map((c) => c.text),
        correct_choice: q.correct,
      };
      const points = numberField(q.points);
      // Not a number: out of range on purpose, so the server reports the field.
      if (points !== undefined) body.points = Number.isNaN(points) ? -1 : points;
      const seconds = numberField(q.seconds);
      if (seconds !== undefined) body.time_limit_seconds = Number.isNaN(seconds) ? -1 : seconds;
      return body;
    }),
  };
}

/** Ids of the form's inputs, one per field the API can name. */
export const fieldIds = {
  title: () => 'quiz-title',
  questions: () => 'quiz-questions',
  text: (q: number) => `q${q}-text`,
  choices: (q: number) => `q${q}-choices`,
  choice: (q: number, c: number) => `q${q}-choice${c}`,
  correct: (q: number) => `q${q}-correct`,
  points: (q: number) => `q${q}-points`,
  seconds: (q: number) => `q${q}-seconds`,
};

/**
 * The form field an API field path names: `title`, `questions`, `questions[0].text`,
 * `questions[0].choices`, `questions[0].choices[1]`, `questions[0].correct_choice`,
 * `questions[0].points`, `questions[0].time_limit_seconds`. `null` for anything else (shown
 * with the form as a whole).
 */
export function fieldIdOf(path: string): string | null {
  const p = path.trim();
  if (p === 'title') return fieldIds.title();
  if (p === 'questions') return fieldIds.questions();
  const m = /^questions\[(\d+)\]\.(text|choices|correct_choice|points|time_limit_seconds)(?:\[(\d+)\])?$/.exec(p);
  if (!m) return null;
  const q = Number(m[1]);
  const c = m[3] === undefined ? null : Number(m[3]);
  switch (m[2]) {
    case 'text':
      return c === null ? fieldIds.text(q) : null;
    case 'choices':
      return c === null ? fieldIds.choices(q) : fieldIds.choice(q, c);
    case 'correct_choice':
      return c === null ? fieldIds.correct(q) : null;
    case 'points':
      return c === null ? fieldIds.points(q) : null;
    case 'time_limit_seconds':
      return c === null ? fieldIds.seconds(q) : null;
  }
  return null;
}

export interface FormErrors {
  /** Messages by form field id. */
  byField: Record<string, string[]>;
  /** Messages that name no field of the form. */
  general: string[];
}

export function groupErrors(errors: FieldError[] | undefined): FormErrors {
  const out: FormErrors = { byField: {}, general: [] };
  for (const e of errors ?? []) {
    const id = fieldIdOf(e.field);
    if (id === null) {
      out.general.push(e.field ? `${e.field}: ${e.message}` : e.message);
    } else {
      (out.byField[id] ??= []).push(e.message);
    }
  }
  return out;
}

/** The first field with an error, in the order of the form, to move focus to. */
export function firstErrorField(form: QuizForm, errors: FormErrors): string | null {
  const order: string[] = [fieldIds.title(), fieldIds.questions()];
  form.questions.forEach((q, i) => {
    order.push(fieldIds.text(i), fieldIds.choices(i));
    q.choices.forEach((_, j) => order.push(fieldIds.choice(i, j)));
    order.push(fieldIds.correct(i), fieldIds.points(i), fieldIds.seconds(i));
  });
  return order.find((id) => errors.byField[id]?.length) ?? null;
}

// --- editing, keeping the right choice pointing at the same choice ---

export function addChoice(q: QuestionForm): QuestionForm {
  if (q.choices.length >= LIMITS.choices.max) return q;
  return { ...q, choices: [...q.choices, { id: newId('c'), text: '' }] };
}

export function removeChoice(q: QuestionForm, index: number): QuestionForm {
  if (q.choices.length <= LIMITS.choices.min || index < 0 || index >= q.choices.length) return q;
  const choices = q.choices.filter((_, i) => i !== index);
  let correct = q.correct;
  if (index < correct) correct -= 1;
  else if (index === correct) correct = 0;
  return { ...q, choices, correct };
}

export function removeQuestion(form: QuizForm, index: number): QuizForm {
  if (form.questions.length <= 1) return form;
  return { ...form, questions: form.questions.filter((_, i) => i !== index) };
}

export function updateQuestion(form: QuizForm, index: number, q: QuestionForm): QuizForm {
  return { ...form, questions: form.questions.map((old, i) => (i === index ? q : old)) };
}
