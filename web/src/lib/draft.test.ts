import { describe, expect, it } from 'vitest';
import { addChoice, emptyQuestion, fieldIdOf, firstErrorField, groupErrors, removeChoice, toDraft, type QuizForm } from './draft';

function form(): QuizForm {
  const q = emptyQuestion();
  q.text = ' Capital of France? ';
  q.choices = [
    { id: 'a', text: 'Paris' },
    { id: 'b', text: 'Lyon' },
    { id: 'c', text: 'Nice' },
  ];
  q.correct = 0;
  q.points = '500';
  q.seconds = '';
  return { title: 'Geo', questions: [q] };
}

describe('toDraft', () => {
  it('maps the form to the API body', () => {
    expect(toDraft(form())).toEqual({
      title: 'Geo',
      questions: [{ text: ' Capital of France? ', choices: ['Paris', 'Lyon', 'Nice'], correct_choice: 0, points: 500 }],
    });
  });
  it('sends numbers that are not numbers out of range, for the server to name', () => {
    const f = form();
    f.questions[0].seconds = 'abc';
    f.questions[0].points = '12.7';
    const q = toDraft(f).questions[0];
    expect(q.time_limit_seconds).toBe(-1);
    expect(q.points).toBe(12);
  });
});

describe('field paths', () => {
  it.each([
    ['title', 'quiz-title'],
    ['questions', 'quiz-questions'],
    ['questions[0].text', 'q0-text'],
    ['questions[2].choices', 'q2-choices'],
    ['questions[1].choices[3]', 'q1-choice3'],
    ['questions[0].correct_choice', 'q0-correct'],
    ['questions[4].points', 'q4-points'],
    ['questions[12].time_limit_seconds', 'q12-seconds'],
  ])('%s → %s', (path, id) => expect(fieldIdOf(path)).toBe(id));
  it('names no field for anything else', () => {
    expect(fieldIdOf('body')).toBeNull();
    expect(fieldIdOf('questions[0].text[1]')).toBeNull();
    expect(fieldIdOf('questions[x].text')).toBeNull();
  });
  it('groups errors by field and finds the first in form order', () => {
    const grouped = groupErrors([
      { field: 'questions[0].time_limit_seconds', message: 'must be from 5 to 120' },
      { field: 'questions[0].choices[1]', message: 'must be 1 to 200 characters' },
      { field: 'questions[0].choices[1]', message: 'second' },
      { field: 'body', message: 'bad' },
    ]);
    expect(grouped.byField['q0-seconds']).toEqual(['must be from 5 to 120']);
    expect(grouped.byField['q0-choice1']).toEqual(['must be 1 to 200 characters', 'second']);
    expect(grouped.general).toEqual(['body: bad']);
    expect(firstErrorField(form(), grouped)).toBe('q0-choice1');
  });
});

describe('editing choices', () => {
  it('keeps the right answer on the same choice when an earlier one goes', () => {
    const q = { ...form().questions[0], correct: 2 };
    const after = removeChoice(q, 0);
    expect(after.choices.map((c) => c.text)).toEqual(['Lyon', 'Nice']);
    expect(after.correct).toBe(1);
  });
  it('resets the right answer when it is removed, and keeps 2 to 6 choices', () => {
    const q = { ...form().questions[0], correct: 1 };
    expect(removeChoice(q, 1).correct).toBe(0);
    const two = removeChoice(q, 2);
    expect(removeChoice(two, 0)).toBe(two);
    let six = q;
    for (let i = 0; i < 5; i++) six = addChoice(six);
    expect(six.choices).toHaveLength(6);
  });
});
