//! A whole quiz played by the domain's own rules, as the events the command side would append:
//! the workload of the fault proofs and benchmarks. Deterministic for a seed.

use anyhow::{Result, anyhow};
use podium_schemas::Event;
use podium_schemas::domain::{
    AnswerCommand, Command, Decision, QuestionDraft, Quiz, QuizDraft, create_quiz, decide,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The events of one played quiz, in the order the command side appends them, with each
/// question's answers in their own slice so a test can stream them in.
#[derive(Debug, Clone)]
pub struct QuizLog {
    pub quiz_id: String,
    /// Creation, joins and the joining lock.
    pub opening: Vec<Event>,
    /// Per question: its start, its answers, then its close.
    pub rounds: Vec<Round>,
    pub finish: Event,
}

#[derive(Debug, Clone)]
pub struct Round {
    pub start: Event,
    pub answers: Vec<Event>,
    pub close: Event,
}

impl QuizLog {
    /// `players` join; each answers each of `questions` questions with probability
    /// `answer_rate`, at a random time within the limit.
    pub fn play(
        quiz_id: &str,
        players: usize,
        questions: usize,
        answer_rate: f64,
        seed: u64,
    ) -> Result<Self> {
        let mut rng = StdRng::seed_from_u64(seed);
        let draft = QuizDraft {
            title: format!("Quiz {quiz_id}"),
            questions: (1..=questions)
                .map(|n| QuestionDraft {
                    text: format!("Question {n}?"),
                    choices: vec!["A".into(), "B".into(), "C".into(), "D".into()],
                    correct_choice: i64::try_from(n % 4).unwrap_or(0),
                    points: Some(1000),
                    time_limit_seconds: Some(20),
                })
                .collect(),
        };
        let t0 = 1_800_000_000_000;
        let created =
            create_quiz(&draft, quiz_id.into(), "ABCDEF".into(), t0).map_err(|r| anyhow!("{r}"))?;
        let mut quiz = Quiz::created(&created);
        let mut opening = vec![Event::QuizCreated(created)];
        let run = |quiz: &mut Quiz, command: Command| -> Result<Vec<Event>> {
            match decide(quiz, &command).map_err(|r| anyhow!("{r}"))? {
                Decision::Append(events) => {
                    for e in &events {
                        quiz.evolve(e);
                    }
                    Ok(events)
                }
                Decision::Repeat(_) => Ok(vec![]),
            }
        };
        let player_ids: Vec<String> = (0..players).map(|i| format!("p{i:06}")).collect();
        for (i, id) in player_ids.iter().enumerate() {
            opening.extend(run(
                &mut quiz,
                Command::Join {
                    player_id: id.clone(),
                    name: format!("Player {i}"),
                    at: t0 + 1,
                },
            )?);
        }
        opening.extend(run(&mut quiz, Command::LockJoining { at: t0 + 2 })?);
        let mut rounds = Vec::with_capacity(questions);
        let mut now = t0 + 1_000;
        for number in 1..=i32::try_from(questions)? {
            let start = run(
                &mut quiz,
                Command::StartQuestion {
                    question: number,
                    at: now,
                },
            )?;
            let mut answers = Vec::new();
            for id in &player_ids {
                if rng.random_bool(answer_rate) {
                    answers.extend(run(
                        &mut quiz,
                        Command::SubmitAnswer(AnswerCommand {
                            player_id: id.clone(),
                            question: number,
                            choice: rng.random_range(0..4),
                            received_at: now + rng.random_range(0..20_000),
                            idempotency_key: None,
                        }),
                    )?);
                }
            }
            now += 21_000;
            let close = run(
                &mut quiz,
                Command::CloseQuestion {
                    question: number,
                    at: now,
                },
            )?;
            let (Some(start), Some(close)) = (start.into_iter().next(), close.into_iter().next())
            else {
                return Err(anyhow!("question {number} did not start and close"));
            };
            rounds.push(Round {
                start,
                answers,
                close,
            });
        }
        let finish = run(&mut quiz, Command::Finish { at: now + 1 })?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("the quiz did not finish"))?;
        Ok(Self {
            quiz_id: quiz_id.into(),
            opening,
            rounds,
            finish,
        })
    }

    /// Every event in the order the command side appends them.
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.opening
            .iter()
            .chain(self.rounds.iter().flat_map(|r| {
                std::iter::once(&r.start)
                    .chain(&r.answers)
                    .chain(std::iter::once(&r.close))
            }))
            .chain(std::iter::once(&self.finish))
    }

    /// How many answers the quiz holds.
    pub fn answer_count(&self) -> usize {
        self.rounds.iter().map(|r| r.answers.len()).sum()
    }
}
