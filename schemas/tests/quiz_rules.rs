//! The quiz rules, given/when/then: given past events, when a command arrives, then these events
//! or this rejection.

use podium_schemas::domain::*;
use podium_schemas::events::*;
use proptest::prelude::*;

const T0: Millis = 1_700_000_000_000;
const LIMIT_MS: i64 = 20_000;

fn draft(questions: usize) -> QuizDraft {
    QuizDraft {
        title: "  Capitals  ".into(),
        questions: (0..questions)
            .map(|i| QuestionDraft {
                text: format!("Question {}", i + 1),
                choices: vec!["a".into(), "b".into(), "c".into()],
                correct_choice: 1,
                points: None,
                time_limit_seconds: None,
            })
            .collect(),
    }
}

fn created(questions: usize) -> Event {
    Event::QuizCreated(
        create_quiz(&draft(questions), "quiz".into(), "ACDEFG".into(), T0).expect("a valid draft"),
    )
}

fn joined(player: &str) -> Event {
    Event::PlayerJoined(PlayerJoined {
        quiz_id: "quiz".into(),
        player_id: player.into(),
        name: player.to_uppercase(),
        joined_at: T0,
    })
}

/// Folds `events` into a quiz, as both sides do.
fn given(events: &[Event]) -> Quiz {
    let Some(Event::QuizCreated(first)) = events.first() else {
        panic!("history starts with QuizCreated")
    };
    let mut quiz = Quiz::created(first);
    for e in &events[1..] {
        quiz.evolve(e);
    }
    quiz
}

fn appended(quiz: &Quiz, command: Command) -> Vec<Event> {
    match decide(quiz, &command) {
        Ok(Decision::Append(events)) => events,
        other => panic!("expected events for {command:?}, got {other:?}"),
    }
}

fn rejected(quiz: &Quiz, command: Command) -> Rejection {
    match decide(quiz, &command) {
        Err(r) => r,
        other => panic!("expected a rejection of {command:?}, got {other:?}"),
    }
}

/// Plays the history and appends whatever `command` decides, returning the new history.
fn play(history: &mut Vec<Event>, command: Command) -> Vec<Event> {
    let events = appended(&given(history), command);
    history.extend(events.iter().cloned());
    events
}

fn start(question: i32, at: Millis) -> Command {
    Command::StartQuestion { question, at }
}

fn answer(player: &str, question: i32, choice: i64, at: Millis) -> Command {
    Command::SubmitAnswer(AnswerCommand {
        player_id: player.into(),
        question,
        choice,
        received_at: at,
        idempotency_key: None,
    })
}

fn the_answer(events: &[Event]) -> AnswerSubmitted {
    match events {
        [Event::AnswerSubmitted(a)] => a.clone(),
        other => panic!("expected one AnswerSubmitted, got {other:?}"),
    }
}

/// A quiz with `questions` questions, players `p1` and `p2`, and question 1 started at T0.
fn running(questions: usize) -> Vec<Event> {
    let mut history = vec![created(questions), joined("p1"), joined("p2")];
    let _ = play(&mut history, start(1, T0));
    history
}

// --- creation ---

#[test]
fn a_valid_draft_gets_defaults_and_trimmed_text() {
    let Event::QuizCreated(q) = created(2) else {
        unreachable!()
    };
    assert_eq!(q.title, "Capitals");
    assert_eq!(q.questions[0].points, 1000);
    assert_eq!(q.questions[0].time_limit_ms, 20_000);
}

#[test]
fn every_invalid_field_is_listed() {
    let mut bad = draft(1);
    bad.title = " ".into();
    bad.questions[0].choices = vec!["only".into()];
    bad.questions[0].correct_choice = 3;
    bad.questions[0].points = Some(10_001);
    bad.questions[0].time_limit_seconds = Some(4);
    let Err(Rejection::Validation(errors)) = create_quiz(&bad, "q".into(), "ACDEFG".into(), T0)
    else {
        panic!("refused")
    };
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "title",
            "questions[0].choices",
            "questions[0].correct_choice",
            "questions[0].points",
            "questions[0].time_limit_seconds"
        ]
    );
}

#[test]
fn a_quiz_has_one_to_one_hundred_questions() {
    assert!(create_quiz(&draft(0), "q".into(), "ACDEFG".into(), T0).is_err());
    assert!(create_quiz(&draft(100), "q".into(), "ACDEFG".into(), T0).is_ok());
    assert!(create_quiz(&draft(101), "q".into(), "ACDEFG".into(), T0).is_err());
}

#[test]
fn join_codes_avoid_look_alikes() {
    for c in ['0', 'O', '1', 'I', 'L', '5', 'S', '2', 'Z', '8', 'B'] {
        assert!(!JOIN_CODE_ALPHABET.contains(&(c as u8)), "{c}");
    }
    assert!(is_join_code("ACDEFG"));
    assert!(!is_join_code("ACDEF0"));
    assert!(!is_join_code("ACDEF"));
}

// --- joining ---

#[test]
fn names_are_trimmed_and_unique_ignoring_case() {
    let quiz = given(&[created(1), joined("ann")]);
    let events = appended(
        &quiz,
        Command::Join {
            player_id: "p9".into(),
            name: "  Bob ".into(),
            at: T0,
        },
    );
    assert!(matches!(&events[..], [Event::PlayerJoined(j)] if j.name == "Bob"));
    let taken = Command::Join {
        player_id: "p9".into(),
        name: "ann".into(),
        at: T0,
    };
    assert_eq!(rejected(&quiz, taken), Rejection::NameTaken);
}

#[test]
fn names_are_one_to_twenty_four_characters() {
    let quiz = given(&[created(1)]);
    let join = |name: &str| Command::Join {
        player_id: "p".into(),
        name: name.into(),
        at: T0,
    };
    assert!(matches!(
        rejected(&quiz, join("   ")),
        Rejection::Validation(_)
    ));
    assert!(matches!(
        rejected(&quiz, join(&"x".repeat(25))),
        Rejection::Validation(_)
    ));
    let _ = appended(&quiz, join(&"é".repeat(24)));
}

#[test]
fn a_locked_or_finished_quiz_refuses_joins() {
    let mut history = vec![created(1)];
    let _ = play(&mut history, Command::LockJoining { at: T0 });
    let join = Command::Join {
        player_id: "p".into(),
        name: "late".into(),
        at: T0,
    };
    assert_eq!(
        rejected(&given(&history), join.clone()),
        Rejection::JoiningLocked
    );
    let _ = play(&mut history, Command::Finish { at: T0 });
    assert_eq!(rejected(&given(&history), join), Rejection::QuizFinished);
}

// --- lifecycle ---

#[test]
fn questions_start_in_order_and_once() {
    let history = running(3);
    let quiz = given(&history);
    assert_eq!(
        rejected(&quiz, start(3, T0)),
        Rejection::QuestionOutOfOrder {
            requested: 3,
            next: 2
        }
    );
    assert_eq!(
        rejected(&quiz, start(1, T0)),
        Rejection::QuestionOutOfOrder {
            requested: 1,
            next: 2
        }
    );
    assert_eq!(
        rejected(&quiz, start(4, T0)),
        Rejection::QuestionNotFound(4)
    );
}

#[test]
fn starting_the_next_question_closes_the_previous_with_its_reveal() {
    let mut history = running(2);
    let events = play(&mut history, start(2, T0 + 1_000));
    let [
        Event::QuestionClosed(closed),
        Event::QuestionStarted(started),
    ] = &events[..]
    else {
        panic!("{events:?}")
    };
    assert_eq!((closed.question, closed.correct_choice), (1, 1));
    assert_eq!(closed.reason, CloseReason::NextQuestion);
    assert_eq!(
        (started.question, started.deadline),
        (2, T0 + 1_000 + LIMIT_MS)
    );
}

#[test]
fn the_clock_closes_a_question_only_after_its_deadline() {
    let quiz = given(&running(1));
    assert!(appended(&quiz, Command::CloseDue { at: T0 + LIMIT_MS }).is_empty());
    let events = appended(
        &quiz,
        Command::CloseDue {
            at: T0 + LIMIT_MS + 1,
        },
    );
    assert!(matches!(&events[..], [Event::QuestionClosed(c)] if c.reason == CloseReason::Deadline));
}

#[test]
fn closing_twice_is_a_no_op_and_closing_a_future_question_is_refused() {
    let mut history = running(2);
    let _ = play(
        &mut history,
        Command::CloseQuestion {
            question: 1,
            at: T0 + 5,
        },
    );
    let quiz = given(&history);
    assert!(
        appended(
            &quiz,
            Command::CloseQuestion {
                question: 1,
                at: T0 + 6
            }
        )
        .is_empty()
    );
    assert_eq!(
        rejected(
            &quiz,
            Command::CloseQuestion {
                question: 2,
                at: T0 + 6
            }
        ),
        Rejection::QuestionNotActive(2)
    );
}

#[test]
fn finishing_closes_the_open_question_and_then_nothing_is_accepted() {
    let mut history = running(2);
    let events = play(&mut history, Command::Finish { at: T0 + 10 });
    assert!(matches!(
        &events[..],
        [Event::QuestionClosed(c), Event::QuizFinished(_)] if c.reason == CloseReason::QuizFinished
    ));
    let quiz = given(&history);
    assert_eq!(rejected(&quiz, start(2, T0 + 11)), Rejection::QuizFinished);
    assert_eq!(
        rejected(&quiz, answer("p1", 1, 1, T0 + 11)),
        Rejection::QuizFinished
    );
    assert!(appended(&quiz, Command::Finish { at: T0 + 12 }).is_empty());
}

// --- answering and scoring ---

#[test]
fn an_answer_at_t_zero_earns_full_points() {
    let a = the_answer(&appended(&given(&running(1)), answer("p1", 1, 1, T0)));
    assert_eq!(
        (a.correct, a.points, a.elapsed_ms, a.streak_bonus),
        (true, 1000, 0, 0)
    );
    assert_eq!(a.rule_version, scoring::RULE_VERSION);
}

#[test]
fn an_answer_at_t_equal_to_the_limit_earns_half() {
    let a = the_answer(&appended(
        &given(&running(1)),
        answer("p1", 1, 1, T0 + LIMIT_MS),
    ));
    assert_eq!((a.points, a.elapsed_ms), (500, 20_000));
}

#[test]
fn an_answer_just_after_the_limit_is_refused() {
    let quiz = given(&running(1));
    assert_eq!(
        rejected(&quiz, answer("p1", 1, 1, T0 + LIMIT_MS + 1)),
        Rejection::QuestionClosed(1)
    );
}

#[test]
fn an_answer_received_in_time_counts_even_after_the_clock_closed_the_question() {
    let mut history = running(1);
    let _ = play(
        &mut history,
        Command::CloseDue {
            at: T0 + LIMIT_MS + 3,
        },
    );
    let _ = the_answer(&appended(
        &given(&history),
        answer("p1", 1, 1, T0 + LIMIT_MS),
    ));
}

#[test]
fn a_question_closed_by_the_host_refuses_answers() {
    let mut history = running(1);
    let _ = play(
        &mut history,
        Command::CloseQuestion {
            question: 1,
            at: T0 + 5,
        },
    );
    assert_eq!(
        rejected(&given(&history), answer("p1", 1, 1, T0 + 6)),
        Rejection::QuestionClosed(1)
    );
}

#[test]
fn only_the_active_question_can_be_answered() {
    let mut history = running(2);
    let quiz = given(&history);
    assert_eq!(
        rejected(&quiz, answer("p1", 2, 1, T0)),
        Rejection::QuestionNotActive(2)
    );
    let _ = play(&mut history, start(2, T0 + 10));
    assert_eq!(
        rejected(&given(&history), answer("p1", 1, 1, T0 + 11)),
        Rejection::QuestionClosed(1)
    );
}

#[test]
fn a_wrong_answer_earns_nothing_and_a_bad_choice_is_refused() {
    let quiz = given(&running(1));
    let a = the_answer(&appended(&quiz, answer("p1", 1, 0, T0)));
    assert_eq!((a.correct, a.points, a.streak), (false, 0, 0));
    assert_eq!(
        rejected(&quiz, answer("p1", 1, 3, T0)),
        Rejection::InvalidChoice {
            choice: 3,
            choices: 3
        }
    );
    assert!(matches!(
        rejected(&quiz, answer("p1", 1, -1, T0)),
        Rejection::InvalidChoice { .. }
    ));
}

#[test]
fn a_player_who_did_not_join_cannot_answer() {
    assert_eq!(
        rejected(&given(&running(1)), answer("ghost", 1, 1, T0)),
        Rejection::PlayerNotFound
    );
}

#[test]
fn the_first_answer_counts_and_a_repeat_with_its_key_gets_the_original() {
    let mut history = running(1);
    let keyed = |choice, key: &str| {
        Command::SubmitAnswer(AnswerCommand {
            player_id: "p1".into(),
            question: 1,
            choice,
            received_at: T0 + 100,
            idempotency_key: Some(key.into()),
        })
    };
    let original = the_answer(&play(&mut history, keyed(1, "k1")));
    let quiz = given(&history);
    assert_eq!(
        decide(&quiz, &keyed(1, "k1")),
        Ok(Decision::Repeat(Box::new(original.clone())))
    );
    assert_eq!(
        rejected(&quiz, keyed(0, "k2")),
        Rejection::AlreadyAnswered(Box::new(original.clone()))
    );
    assert_eq!(
        rejected(&quiz, answer("p1", 1, 1, T0)),
        Rejection::AlreadyAnswered(Box::new(original))
    );
}

/// Plays `questions` questions where `p1` answers `choices[i]` (None: no answer) at once.
fn streak_run(choices: &[Option<i64>]) -> Vec<AnswerSubmitted> {
    let mut history = vec![created(choices.len()), joined("p1")];
    let mut answers = vec![];
    for (i, choice) in choices.iter().enumerate() {
        let q = i32::try_from(i + 1).expect("few questions");
        let at = T0 + 100_000 * i64::from(q);
        let _ = play(&mut history, start(q, at));
        if let Some(c) = choice {
            answers.push(the_answer(&play(&mut history, answer("p1", q, *c, at))));
        }
    }
    answers
}

#[test]
fn consecutive_correct_answers_earn_a_growing_bonus_capped_at_500() {
    let answers = streak_run(&[Some(1); 8]);
    let bonuses: Vec<i32> = answers.iter().map(|a| a.streak_bonus).collect();
    assert_eq!(bonuses, [0, 100, 200, 300, 400, 500, 500, 500]);
}

#[test]
fn a_wrong_answer_breaks_the_streak() {
    let answers = streak_run(&[Some(1), Some(1), Some(0), Some(1), Some(1)]);
    let streaks: Vec<i32> = answers.iter().map(|a| a.streak).collect();
    assert_eq!(streaks, [1, 2, 0, 1, 2]);
    assert_eq!(answers[4].streak_bonus, 100);
}

#[test]
fn a_missed_question_breaks_the_streak() {
    let answers = streak_run(&[Some(1), Some(1), None, Some(1)]);
    let streaks: Vec<i32> = answers.iter().map(|a| a.streak).collect();
    assert_eq!(streaks, [1, 2, 1]);
    assert_eq!(answers[2].streak_bonus, 0);
}

// --- the leaderboard ---

#[test]
fn the_leaderboard_orders_by_points_then_time_then_id() {
    let mut history = running(1);
    for (player, at) in [("p2", T0 + 10), ("p1", T0 + 10)] {
        let _ = play(&mut history, answer(player, 1, 1, at));
    }
    history.push(joined("p0"));
    let _ = play(&mut history, answer("p0", 1, 1, T0 + 5));
    let ranked: Vec<String> = given(&history)
        .standings
        .ranked()
        .into_iter()
        .map(|s| s.player_id)
        .collect();
    // p0 was faster; p1 and p2 tie on points and time, so the id decides.
    assert_eq!(ranked, ["p0", "p1", "p2"]);
}

// --- properties ---

fn scenario() -> impl Strategy<Value = Vec<(usize, i64, i64)>> {
    // (player index, choice, delay ms) per answer, over three questions.
    prop::collection::vec((0usize..4, 0i64..3, 0i64..25_000), 0..40)
}

fn play_scenario(answers: &[(usize, i64, i64)]) -> Vec<Event> {
    let mut history = vec![created(3)];
    for p in 0..4 {
        history.push(joined(&format!("p{p}")));
    }
    for (q, chunk) in answers.chunks(answers.len().div_ceil(3).max(1)).enumerate() {
        let q = i32::try_from(q + 1).expect("few questions");
        let at = T0 + 100_000 * i64::from(q);
        let _ = play(&mut history, start(q, at));
        for &(p, choice, delay) in chunk {
            if let Ok(Decision::Append(events)) = decide(
                &given(&history),
                &answer(&format!("p{p}"), q, choice, at + delay),
            ) {
                history.extend(events);
            }
        }
    }
    history
}

proptest! {
    #[test]
    fn points_are_never_negative_and_totals_are_sums(answers in scenario()) {
        let history = play_scenario(&answers);
        let quiz = given(&history);
        for row in quiz.standings.ranked() {
            let awarded: i64 = history.iter().filter_map(|e| match e {
                Event::AnswerSubmitted(a) if a.player_id == row.player_id => Some(a.awarded()),
                _ => None,
            }).collect::<Vec<_>>().iter().sum();
            prop_assert!(row.points >= 0);
            prop_assert_eq!(row.points, awarded);
        }
    }

    #[test]
    fn folding_the_same_events_twice_changes_nothing(answers in scenario()) {
        let history = play_scenario(&answers);
        let once = given(&history);
        let mut twice = once.clone();
        for e in &history[1..] {
            twice.evolve(e);
        }
        prop_assert_eq!(once, twice);
    }
}

#[test]
fn a_kicked_player_cannot_answer_and_leaves_the_leaderboard_in_any_order() {
    let mut history = running(2);
    let _ = play(&mut history, answer("p1", 1, 1, T0 + 2_000));
    let p2_answer = play(&mut history, answer("p2", 1, 1, T0 + 2_500));
    let kick = play(
        &mut history,
        Command::Kick {
            player_id: "p2".into(),
            at: T0 + 3_000,
        },
    );
    assert_eq!(
        kick,
        [Event::PlayerKicked(PlayerKicked {
            quiz_id: "quiz".into(),
            player_id: "p2".into(),
            kicked_at: T0 + 3_000,
        })]
    );
    let quiz = given(&history);
    assert_eq!(quiz.active_players(), 1);
    assert_eq!(
        rejected(&quiz, answer("p2", 1, 0, T0 + 3_100)),
        Rejection::PlayerKicked
    );
    // Kicking again is a no-op, so a retried kick succeeds; an unknown player is refused.
    let again = Command::Kick {
        player_id: "p2".into(),
        at: T0 + 3_200,
    };
    assert!(appended(&quiz, again).is_empty());
    let unknown = Command::Kick {
        player_id: "eve".into(),
        at: T0 + 3_200,
    };
    assert_eq!(rejected(&quiz, unknown), Rejection::PlayerNotFound);

    // The read models drop p2 from the board whether his answer is folded before or after
    // the kick (they travel on different partitions); the question's statistics keep it.
    let mut kick_first: Vec<Event> = history
        .iter()
        .filter(|e| !p2_answer.contains(e))
        .cloned()
        .collect();
    kick_first.extend(p2_answer.iter().cloned());
    for log in [&history, &kick_first] {
        let models = ReadModels::fold(log.iter());
        let view = &models.quizzes["quiz"];
        let ranked: Vec<_> = view.ranked().into_iter().map(|s| s.player_id).collect();
        assert_eq!(ranked, ["p1"]);
        assert_eq!(view.player_count(), 1);
        assert_eq!(view.questions[&1].stats.answers, 2);
        assert_eq!(view.kicks.values().collect::<Vec<_>>(), ["p2"]);
    }
}

#[test]
fn a_finished_quiz_refuses_kicks() {
    let mut history = running(1);
    let _ = play(&mut history, Command::Finish { at: T0 + 5_000 });
    let kick = Command::Kick {
        player_id: "p1".into(),
        at: T0 + 6_000,
    };
    assert_eq!(rejected(&given(&history), kick), Rejection::QuizFinished);
}
