//! Rule versions: version 1 of [`Rules`] scores exactly as the command side's `decide` does, so a
//! re-scoring under version 1 reproduces what was recorded; version 2 differs only in points.

use podium_schemas::domain::scoring::{RULE_VERSION, Rules, Score};
use podium_schemas::domain::*;
use podium_schemas::events::*;
use proptest::prelude::*;

const T0: Millis = 1_700_000_000_000;

/// One player's play of a question: no answer, or a choice after some ms.
#[derive(Debug, Clone)]
enum Play {
    Skip,
    Answer { choice: i64, after_ms: i64 },
}

fn play() -> impl Strategy<Value = Play> {
    prop_oneof![
        1 => Just(Play::Skip),
        4 => (0i64..3, 0i64..=30_000).prop_map(|(choice, after_ms)| Play::Answer { choice, after_ms }),
    ]
}

fn draft(points: &[i64], limits: &[i64]) -> QuizDraft {
    QuizDraft {
        title: "Rules".into(),
        questions: points
            .iter()
            .zip(limits)
            .enumerate()
            .map(|(i, (&p, &limit))| QuestionDraft {
                text: format!("Question {}", i + 1),
                choices: vec!["a".into(), "b".into(), "c".into()],
                correct_choice: i64::try_from(i % 3).unwrap_or(0),
                points: Some(p),
                time_limit_seconds: Some(limit),
            })
            .collect(),
    }
}

/// Plays the quiz with the domain's `decide`, as the command side does; returns the specs and
/// the recorded answers.
fn played(
    points: &[i64],
    limits: &[i64],
    plays: &[Play],
) -> (Vec<QuestionSpec>, Vec<AnswerSubmitted>) {
    let created = create_quiz(&draft(points, limits), "q".into(), "ACDEFG".into(), T0)
        .expect("a valid draft");
    let specs = created.questions.clone();
    let mut quiz = Quiz::created(&created);
    let run = |quiz: &mut Quiz, command: Command| -> Vec<Event> {
        match decide(quiz, &command) {
            Ok(Decision::Append(events)) => {
                for e in &events {
                    quiz.evolve(e);
                }
                events
            }
            other => panic!("{command:?}: {other:?}"),
        }
    };
    let _ = run(
        &mut quiz,
        Command::Join {
            player_id: "p".into(),
            name: "P".into(),
            at: T0,
        },
    );
    let mut answers = Vec::new();
    let mut now = T0 + 1_000;
    for (number, play) in (1..).zip(plays) {
        let _ = run(
            &mut quiz,
            Command::StartQuestion {
                question: number,
                at: now,
            },
        );
        if let Play::Answer { choice, after_ms } = play {
            let limit = i64::from(specs[usize::try_from(number - 1).unwrap_or(0)].time_limit_ms);
            let events = run(
                &mut quiz,
                Command::SubmitAnswer(AnswerCommand {
                    player_id: "p".into(),
                    question: number,
                    choice: *choice,
                    received_at: now + (*after_ms).min(limit),
                    idempotency_key: None,
                }),
            );
            for e in events {
                if let Event::AnswerSubmitted(a) = e {
                    answers.push(a);
                }
            }
        }
        now += 200_000;
    }
    (specs, answers)
}

proptest! {
    #[test]
    fn version_1_reproduces_every_recorded_score(
        points in prop::collection::vec(0i64..=10_000, 6),
        limits in prop::collection::vec(5i64..=120, 6),
        plays in prop::collection::vec(play(), 6),
    ) {
        let (specs, answers) = played(&points, &limits, &plays);
        let mut previous: Option<&AnswerSubmitted> = None;
        for a in &answers {
            prop_assert_eq!(a.rule_version, RULE_VERSION);
            let spec = &specs[usize::try_from(a.question - 1).unwrap_or(0)];
            // The streak carries over only from an answer to the question just before.
            let previous_streak = previous
                .filter(|p| p.question == a.question - 1)
                .map_or(0, |p| p.streak);
            let rules = Rules::for_version(a.rule_version).expect("a known version");
            prop_assert_eq!(
                rules.score(spec, a.correct, a.elapsed_ms, previous_streak),
                Score { points: a.points, streak: a.streak, streak_bonus: a.streak_bonus }
            );
            let flat = Rules::FlatAndStreak.score(spec, a.correct, a.elapsed_ms, previous_streak);
            prop_assert_eq!((flat.streak, flat.streak_bonus), (a.streak, a.streak_bonus));
            prop_assert_eq!(flat.points, if a.correct { spec.points } else { 0 });
            previous = Some(a);
        }
    }
}
