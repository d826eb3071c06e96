//! The quiz aggregate: its state, `decide` and `evolve`.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::domain::scoring::Rules;
use crate::domain::standings::Standings;
use crate::domain::{Rejection, normalize_name};
use crate::events::{
    AnswerSubmitted, CloseReason, Event, JoiningLocked, Millis, PlayerJoined, PlayerKicked,
    QuestionClosed, QuestionSpec, QuestionStarted, QuizCreated, QuizFinished,
};

/// The question most recently started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveQuestion {
    pub number: i32,
    pub started_at: Millis,
    pub deadline: Millis,
    pub closed: Option<CloseReason>,
}

/// A quiz as the command side knows it: everything needed to decide, built only by `evolve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quiz {
    pub quiz_id: String,
    pub title: String,
    pub join_code: String,
    pub questions: Vec<QuestionSpec>,
    pub joining_locked: bool,
    pub finished: bool,
    /// How many questions have been started; the next to start is `started + 1`.
    pub started: i32,
    pub current: Option<ActiveQuestion>,
    /// Player names by id.
    pub players: HashMap<String, String>,
    /// Lower-cased names, for uniqueness ignoring case. A kicked player's name stays taken.
    names: HashSet<String>,
    /// Players the host removed: they can neither answer nor rejoin.
    pub kicked: HashSet<String>,
    /// Reveals of closed questions: question number to correct choice.
    pub reveals: BTreeMap<i32, i32>,
    pub standings: Standings,
}

/// A player's answer as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerCommand {
    pub player_id: String,
    pub question: i32,
    pub choice: i64,
    pub received_at: Millis,
    pub idempotency_key: Option<String>,
}

/// What a host, a player or the question clock asks of a quiz.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Join {
        player_id: String,
        name: String,
        at: Millis,
    },
    LockJoining {
        at: Millis,
    },
    /// The host removes a player.
    Kick {
        player_id: String,
        at: Millis,
    },
    StartQuestion {
        question: i32,
        at: Millis,
    },
    CloseQuestion {
        question: i32,
        at: Millis,
    },
    /// The question clock: closes the active question once its deadline has passed.
    CloseDue {
        at: Millis,
    },
    Finish {
        at: Millis,
    },
    SubmitAnswer(AnswerCommand),
}

impl Command {
    /// Whether this host command asks for what `earlier` asked, whatever the time of each: a
    /// retry. Joins and answers are matched by name and idempotency key instead.
    pub fn repeats(&self, earlier: &Command) -> bool {
        use Command as C;
        match (self, earlier) {
            (C::LockJoining { .. }, C::LockJoining { .. })
            | (C::CloseDue { .. }, C::CloseDue { .. })
            | (C::Finish { .. }, C::Finish { .. }) => true,
            (C::Kick { player_id: a, .. }, C::Kick { player_id: b, .. }) => a == b,
            (C::StartQuestion { question: a, .. }, C::StartQuestion { question: b, .. })
            | (C::CloseQuestion { question: a, .. }, C::CloseQuestion { question: b, .. }) => {
                a == b
            }
            _ => false,
        }
    }
}

/// The outcome of a command that was not refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Append these events, in order. Empty when the command was already in effect.
    Append(Vec<Event>),
    /// The same answer again, with the same idempotency key: answer with the original result.
    Repeat(Box<AnswerSubmitted>),
}

impl Quiz {
    /// The state right after creation.
    pub fn created(e: &QuizCreated) -> Self {
        Self {
            quiz_id: e.quiz_id.clone(),
            title: e.title.clone(),
            join_code: e.join_code.clone(),
            questions: e.questions.clone(),
            joining_locked: false,
            finished: false,
            started: 0,
            current: None,
            players: HashMap::new(),
            names: HashSet::new(),
            kicked: HashSet::new(),
            reveals: BTreeMap::new(),
            standings: Standings::default(),
        }
    }

    /// The question with 1-based `number`.
    pub fn question(&self, number: i32) -> Option<&QuestionSpec> {
        let index = usize::try_from(number).ok()?.checked_sub(1)?;
        self.questions.get(index)
    }

    /// Players who joined and were not kicked.
    pub fn active_players(&self) -> usize {
        self.players.len() - self.kicked.len()
    }

    pub fn name_taken(&self, name: &str) -> bool {
        self.names.contains(&name.to_lowercase())
    }

    /// The deadline of the active question while it is open.
    pub fn open_deadline(&self) -> Option<Millis> {
        self.current
            .as_ref()
            .filter(|c| c.closed.is_none())
            .map(|c| c.deadline)
    }

    /// Folds one event into the state. Events are facts: evolve never refuses one, and a
    /// repeated answer changes nothing.
    pub fn evolve(&mut self, event: &Event) {
        match event {
            Event::QuizCreated(_) => {}
            Event::PlayerJoined(e) => {
                let _ = self.names.insert(e.name.to_lowercase());
                let _ = self.players.insert(e.player_id.clone(), e.name.clone());
            }
            Event::PlayerKicked(e) => {
                let _ = self.kicked.insert(e.player_id.clone());
            }
            Event::JoiningLocked(_) => self.joining_locked = true,
            Event::QuestionStarted(e) => {
                self.started = self.started.max(e.question);
                self.current = Some(ActiveQuestion {
                    number: e.question,
                    started_at: e.started_at,
                    deadline: e.deadline,
                    closed: None,
                });
            }
            Event::QuestionClosed(e) => {
                let _ = self.reveals.insert(e.question, e.correct_choice);
                if let Some(c) = self.current.as_mut().filter(|c| c.number == e.question) {
                    c.closed = Some(e.reason);
                }
            }
            Event::QuizFinished(_) => self.finished = true,
            Event::AnswerSubmitted(e) => {
                let _ = self.standings.apply(e);
            }
        }
    }

    fn close_current(&self, reason: CloseReason, at: Millis) -> Option<Event> {
        let current = self.current.as_ref().filter(|c| c.closed.is_none())?;
        let question = self.question(current.number)?;
        // A question left open past its deadline was closed by the clock, whoever notices it.
        let reason = if at > current.deadline {
            CloseReason::Deadline
        } else {
            reason
        };
        Some(Event::QuestionClosed(QuestionClosed {
            quiz_id: self.quiz_id.clone(),
            question: current.number,
            closed_at: at,
            correct_choice: question.correct_choice,
            reason,
        }))
    }

    fn decide_answer(&self, cmd: &AnswerCommand) -> Result<Decision, Rejection> {
        if !self.players.contains_key(&cmd.player_id) {
            return Err(Rejection::PlayerNotFound);
        }
        if self.kicked.contains(&cmd.player_id) {
            return Err(Rejection::PlayerKicked);
        }
        let question = self
            .question(cmd.question)
            .ok_or(Rejection::QuestionNotFound(cmd.question))?;
        let player = self.standings.player(&cmd.player_id);
        if let Some(original) = player.and_then(|p| p.answers.get(&cmd.question)) {
            // The first answer counts. The same request again gets its original result.
            let same_request =
                cmd.idempotency_key.is_some() && cmd.idempotency_key == original.idempotency_key;
            let original = Box::new(original.clone());
            return if same_request {
                Ok(Decision::Repeat(original))
            } else {
                Err(Rejection::AlreadyAnswered(original))
            };
        }
        if self.finished {
            return Err(Rejection::QuizFinished);
        }
        let active = self
            .current
            .as_ref()
            .filter(|c| c.number >= cmd.question)
            .ok_or(Rejection::QuestionNotActive(cmd.question))?;
        let open = match active.closed {
            _ if active.number != cmd.question => false,
            None => true,
            // The clock closes a question just after its deadline; an answer received in time
            // still counts even if it is decided after that close.
            Some(CloseReason::Deadline) => true,
            Some(_) => false,
        };
        if !open || cmd.received_at > active.deadline {
            return Err(Rejection::QuestionClosed(cmd.question));
        }
        let choices = question.choices.len();
        let choice = i32::try_from(cmd.choice)
            .ok()
            .filter(|&c| usize::try_from(c).is_ok_and(|c| c < choices))
            .ok_or(Rejection::InvalidChoice {
                choice: cmd.choice,
                choices,
            })?;

        let elapsed = (cmd.received_at - active.started_at).clamp(0, i64::from(i32::MAX));
        let elapsed_ms = i32::try_from(elapsed).unwrap_or(i32::MAX);
        let correct = choice == question.correct_choice;
        let previous_streak = player.map_or(0, |p| p.streak_at(cmd.question - 1));
        let score = Rules::CURRENT.score(question, correct, elapsed_ms, previous_streak);
        Ok(Decision::Append(vec![Event::AnswerSubmitted(
            AnswerSubmitted {
                quiz_id: self.quiz_id.clone(),
                player_id: cmd.player_id.clone(),
                question: cmd.question,
                choice,
                received_at: cmd.received_at,
                elapsed_ms,
                correct,
                points: score.points,
                streak: score.streak,
                streak_bonus: score.streak_bonus,
                rule_version: Rules::CURRENT.version(),
                idempotency_key: cmd.idempotency_key.clone(),
            },
        )]))
    }
}

/// Decides what a command means for a quiz: the events to append, or why it is refused.
pub fn decide(quiz: &Quiz, command: &Command) -> Result<Decision, Rejection> {
    let quiz_id = || quiz.quiz_id.clone();
    let events = match command {
        Command::SubmitAnswer(answer) => return quiz.decide_answer(answer),
        Command::Join {
            player_id,
            name,
            at,
        } => {
            if quiz.finished {
                return Err(Rejection::QuizFinished);
            }
            if quiz.joining_locked {
                return Err(Rejection::JoiningLocked);
            }
            let name = normalize_name(name)?;
            if quiz.name_taken(&name) {
                return Err(Rejection::NameTaken);
            }
            vec![Event::PlayerJoined(PlayerJoined {
                quiz_id: quiz_id(),
                player_id: player_id.clone(),
                name,
                joined_at: *at,
            })]
        }
        Command::LockJoining { at } => {
            if quiz.finished {
                return Err(Rejection::QuizFinished);
            }
            if quiz.joining_locked {
                vec![]
            } else {
                vec![Event::JoiningLocked(JoiningLocked {
                    quiz_id: quiz_id(),
                    locked_at: *at,
                })]
            }
        }
        Command::Kick { player_id, at } => {
            if quiz.finished {
                return Err(Rejection::QuizFinished);
            }
            if !quiz.players.contains_key(player_id) {
                return Err(Rejection::PlayerNotFound);
            }
            if quiz.kicked.contains(player_id) {
                vec![]
            } else {
                vec![Event::PlayerKicked(PlayerKicked {
                    quiz_id: quiz_id(),
                    player_id: player_id.clone(),
                    kicked_at: *at,
                })]
            }
        }
        Command::StartQuestion { question, at } => {
            if quiz.finished {
                return Err(Rejection::QuizFinished);
            }
            let spec = quiz
                .question(*question)
                .ok_or(Rejection::QuestionNotFound(*question))?;
            let next = quiz.started + 1;
            if *question != next {
                return Err(Rejection::QuestionOutOfOrder {
                    requested: *question,
                    next,
                });
            }
            let mut events: Vec<Event> = quiz
                .close_current(CloseReason::NextQuestion, *at)
                .into_iter()
                .collect();
            events.push(Event::QuestionStarted(QuestionStarted {
                quiz_id: quiz_id(),
                question: *question,
                started_at: *at,
                deadline: at + i64::from(spec.time_limit_ms),
            }));
            events
        }
        Command::CloseQuestion { question, at } => {
            let _ = quiz
                .question(*question)
                .ok_or(Rejection::QuestionNotFound(*question))?;
            match &quiz.current {
                Some(c) if c.number == *question => quiz
                    .close_current(CloseReason::Host, *at)
                    .into_iter()
                    .collect(),
                // Closing a closed question again is a no-op, so a retried close succeeds.
                _ if quiz.reveals.contains_key(question) => vec![],
                _ => return Err(Rejection::QuestionNotActive(*question)),
            }
        }
        Command::CloseDue { at } => match quiz.open_deadline() {
            Some(deadline) if *at > deadline => quiz
                .close_current(CloseReason::Deadline, *at)
                .into_iter()
                .collect(),
            _ => vec![],
        },
        Command::Finish { at } => {
            if quiz.finished {
                vec![]
            } else {
                let mut events: Vec<Event> = quiz
                    .close_current(CloseReason::QuizFinished, *at)
                    .into_iter()
                    .collect();
                events.push(Event::QuizFinished(QuizFinished {
                    quiz_id: quiz_id(),
                    finished_at: *at,
                }));
                events
            }
        }
    };
    Ok(Decision::Append(events))
}
