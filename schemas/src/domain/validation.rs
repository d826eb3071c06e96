//! Validation of what hosts and players send, with every offending field listed.

use crate::domain::Rejection;
use crate::events::{Millis, QuestionSpec, QuizCreated};

/// The limits of the quiz rules.
#[derive(Debug, Clone, Copy)]
pub struct Limits;

impl Limits {
    pub const TITLE_CHARS: (usize, usize) = (1, 200);
    pub const QUESTIONS: (usize, usize) = (1, 100);
    pub const QUESTION_TEXT_CHARS: (usize, usize) = (1, 500);
    pub const CHOICES: (usize, usize) = (2, 6);
    pub const CHOICE_CHARS: (usize, usize) = (1, 200);
    pub const POINTS: (i64, i64) = (0, 10_000);
    pub const DEFAULT_POINTS: i64 = 1000;
    pub const TIME_LIMIT_SECONDS: (i64, i64) = (5, 120);
    pub const DEFAULT_TIME_LIMIT_SECONDS: i64 = 20;
    pub const NAME_CHARS: (usize, usize) = (1, 24);
}

/// Join codes avoid look-alikes: no 0/O, 1/I/L, 5/S, 2/Z, 8/B.
pub const JOIN_CODE_ALPHABET: &[u8] = b"ACDEFGHJKMNPQRTUVWXY34679";
pub const JOIN_CODE_LEN: usize = 6;

pub fn is_join_code(code: &str) -> bool {
    code.len() == JOIN_CODE_LEN && code.bytes().all(|b| JOIN_CODE_ALPHABET.contains(&b))
}

/// One invalid field: a JSON-path-like name and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A quiz as the host describes it. Numbers are wide so that out-of-range values are reported
/// as field errors rather than as undecodable input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuizDraft {
    pub title: String,
    pub questions: Vec<QuestionDraft>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuestionDraft {
    pub text: String,
    pub choices: Vec<String>,
    pub correct_choice: i64,
    pub points: Option<i64>,
    pub time_limit_seconds: Option<i64>,
}

fn check_text(errors: &mut Vec<FieldError>, field: String, text: &str, (min, max): (usize, usize)) {
    let chars = text.trim().chars().count();
    if chars < min || chars > max {
        errors.push(FieldError::new(
            field,
            format!("must be {min} to {max} characters, not counting surrounding spaces"),
        ));
    } else if text.chars().any(char::is_control) {
        errors.push(FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
}

fn check_range(errors: &mut Vec<FieldError>, field: String, value: i64, (min, max): (i64, i64)) {
    if value < min || value > max {
        errors.push(FieldError::new(
            field,
            format!("must be from {min} to {max}"),
        ));
    }
}

/// Decides `QuizCreated` from a draft: every rule on titles, questions and choices is checked
/// and every violation reported.
pub fn create_quiz(
    draft: &QuizDraft,
    quiz_id: String,
    join_code: String,
    now: Millis,
) -> Result<QuizCreated, Rejection> {
    let mut errors = Vec::new();
    check_text(
        &mut errors,
        "title".into(),
        &draft.title,
        Limits::TITLE_CHARS,
    );
    let (min_q, max_q) = Limits::QUESTIONS;
    if draft.questions.len() < min_q || draft.questions.len() > max_q {
        errors.push(FieldError::new(
            "questions",
            format!("a quiz has {min_q} to {max_q} questions"),
        ));
    }
    let mut questions = Vec::with_capacity(draft.questions.len());
    for (i, q) in draft.questions.iter().enumerate().take(max_q) {
        let at = |f: &str| format!("questions[{i}].{f}");
        check_text(
            &mut errors,
            at("text"),
            &q.text,
            Limits::QUESTION_TEXT_CHARS,
        );
        let (min_c, max_c) = Limits::CHOICES;
        if q.choices.len() < min_c || q.choices.len() > max_c {
            errors.push(FieldError::new(
                at("choices"),
                format!("a question has {min_c} to {max_c} choices"),
            ));
        }
        for (j, c) in q.choices.iter().enumerate().take(max_c) {
            check_text(
                &mut errors,
                format!("questions[{i}].choices[{j}]"),
                c,
                Limits::CHOICE_CHARS,
            );
        }
        let choices = i64::try_from(q.choices.len()).unwrap_or(i64::MAX);
        if q.correct_choice < 0 || q.correct_choice >= choices {
            errors.push(FieldError::new(
                at("correct_choice"),
                "must be the 0-based index of one of the choices",
            ));
        }
        let points = q.points.unwrap_or(Limits::DEFAULT_POINTS);
        check_range(&mut errors, at("points"), points, Limits::POINTS);
        let seconds = q
            .time_limit_seconds
            .unwrap_or(Limits::DEFAULT_TIME_LIMIT_SECONDS);
        check_range(
            &mut errors,
            at("time_limit_seconds"),
            seconds,
            Limits::TIME_LIMIT_SECONDS,
        );
        if errors.is_empty() {
            // In range by the checks above, so the narrowing casts are exact.
            questions.push(QuestionSpec {
                text: q.text.trim().to_owned(),
                choices: q.choices.iter().map(|c| c.trim().to_owned()).collect(),
                correct_choice: i32::try_from(q.correct_choice).unwrap_or_default(),
                points: i32::try_from(points).unwrap_or_default(),
                time_limit_ms: i32::try_from(seconds * 1000).unwrap_or_default(),
            });
        }
    }
    if !errors.is_empty() {
        return Err(Rejection::Validation(errors));
    }
    Ok(QuizCreated {
        quiz_id,
        title: draft.title.trim().to_owned(),
        join_code,
        questions,
        created_at: now,
    })
}

/// Trims a display name and checks its length; returns the name to record.
pub fn normalize_name(name: &str) -> Result<String, Rejection> {
    let mut errors = Vec::new();
    check_text(&mut errors, "name".into(), name, Limits::NAME_CHARS);
    if errors.is_empty() {
        Ok(name.trim().to_owned())
    } else {
        Err(Rejection::Validation(errors))
    }
}
