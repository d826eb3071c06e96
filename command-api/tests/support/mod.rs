//! What the command side's tests share.

use podium_schemas::domain::{QuestionDraft, QuizDraft};

/// A quiz of two questions, "One?" and "Two?", each with choices A (right) and B, 1,000 points
/// and 30 seconds.
pub(crate) fn two_questions(title: &str) -> QuizDraft {
    let question = |text: &str| QuestionDraft {
        text: text.into(),
        choices: vec!["A".into(), "B".into()],
        correct_choice: 0,
        points: Some(1000),
        time_limit_seconds: Some(30),
    };
    QuizDraft {
        title: title.into(),
        questions: vec![question("One?"), question("Two?")],
    }
}
