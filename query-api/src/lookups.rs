//! Lookups of one quiz's players share Redis reads, as a database's group commit shares
//! flushes: the first lookup of a quiz reads at once, and every lookup that arrives while a
//! read is out joins the next one. One quiet request costs one round trip as before; a stadium
//! of phones asking their rank costs one script per batch, not one per phone.
//!
//! Hand-written because the batching crates (`dataloader`) hold a lock across the read and
//! panic when a caller that was driving a batch is cancelled, which hyper does to every request
//! whose client leaves. Here the reads run in a task of their own, so a cancelled lookup only
//! drops its own answer.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

use crate::error::{Error, Result};

/// What answers a batch: the values of those of `player_ids` that exist, by player id.
pub trait BatchRead<V>: Clone + Send + Sync + 'static {
    fn read(
        &self,
        quiz_id: String,
        player_ids: Vec<String>,
    ) -> impl Future<Output = Result<HashMap<String, V>>> + Send;
}

type Waiter<V> = (String, oneshot::Sender<Result<Option<V>>>);

/// Per quiz, the lookups waiting for the next read. A quiz has an entry exactly while a task
/// drains it.
pub struct Coalescer<V> {
    waiting: Mutex<HashMap<String, Vec<Waiter<V>>>>,
}

impl<V> std::fmt::Debug for Coalescer<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalescer").finish_non_exhaustive()
    }
}

impl<V> Default for Coalescer<V> {
    fn default() -> Self {
        Self {
            waiting: Mutex::new(HashMap::new()),
        }
    }
}

impl<V: Clone + Send + 'static> Coalescer<V> {
    /// `player_id`'s value in `quiz_id`, or `None` if it has none, read together with every
    /// lookup of the quiz that is waiting.
    pub async fn lookup<R: BatchRead<V>>(
        self: &Arc<Self>,
        source: &R,
        quiz_id: &str,
        player_id: &str,
    ) -> Result<Option<V>> {
        let (answer, answered) = oneshot::channel();
        let first = {
            let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
            match waiting.entry(quiz_id.to_owned()) {
                Entry::Occupied(mut queue) => {
                    queue.get_mut().push((player_id.to_owned(), answer));
                    false
                }
                Entry::Vacant(queue) => {
                    let _ = queue.insert(vec![(player_id.to_owned(), answer)]);
                    true
                }
            }
        };
        if first {
            let draining = Draining {
                coalescer: self.clone(),
                quiz_id: quiz_id.to_owned(),
                done: false,
            };
            drop(tokio::spawn(draining.run(source.clone())));
        }
        // The drainer only goes without answering if its read panicked.
        answered
            .await
            .unwrap_or_else(|_| Err(Error::SharedReadFailed))
    }
}

/// The task that reads one quiz's batches until no lookup waits. If it dies mid-read its
/// waiters are dropped with it, and the next lookup starts afresh.
struct Draining<V> {
    coalescer: Arc<Coalescer<V>>,
    quiz_id: String,
    done: bool,
}

impl<V: Clone + Send + 'static> Draining<V> {
    async fn run<R: BatchRead<V>>(mut self, source: R) {
        loop {
            let batch = {
                let mut waiting = self
                    .coalescer
                    .waiting
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                match waiting.get_mut(&self.quiz_id) {
                    Some(queue) if !queue.is_empty() => std::mem::take(queue),
                    _ => {
                        let _ = waiting.remove(&self.quiz_id);
                        drop(waiting);
                        self.done = true;
                        return;
                    }
                }
            };
            let mut player_ids: Vec<String> = batch.iter().map(|(p, _)| p.clone()).collect();
            player_ids.sort_unstable();
            player_ids.dedup();
            metrics::histogram!("podium_query_standings_batch_players").record(f64::from(
                u32::try_from(player_ids.len()).unwrap_or(u32::MAX),
            ));
            let read = source.read(self.quiz_id.clone(), player_ids).await;
            for (player_id, answer) in batch {
                let _ = answer.send(match &read {
                    Ok(values) => Ok(values.get(&player_id).cloned()),
                    Err(cause) => Err(cause.clone()),
                });
            }
        }
    }
}

impl<V> Drop for Draining<V> {
    fn drop(&mut self) {
        if !self.done {
            // Only this task drains the quiz, so the entry is still its own.
            let _ = self
                .coalescer
                .waiting
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&self.quiz_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::sync::Semaphore;

    use super::*;

    /// Stands in for Redis: values are the players' name lengths, and each read waits for a
    /// permit, so a test decides when a read completes.
    #[derive(Clone)]
    struct Gated {
        reads: Arc<Mutex<Vec<Vec<String>>>>,
        permits: Arc<Semaphore>,
        fail: Arc<AtomicUsize>,
    }

    impl Gated {
        fn new() -> Self {
            Self {
                reads: Arc::default(),
                permits: Arc::new(Semaphore::new(0)),
                fail: Arc::default(),
            }
        }

        fn reads(&self) -> Vec<Vec<String>> {
            self.reads.lock().expect("lock").clone()
        }
    }

    impl BatchRead<usize> for Gated {
        async fn read(
            &self,
            _quiz_id: String,
            player_ids: Vec<String>,
        ) -> Result<HashMap<String, usize>> {
            self.reads.lock().expect("lock").push(player_ids.clone());
            self.permits.acquire().await.expect("permits").forget();
            if self.fail.load(Ordering::SeqCst) > 0 {
                return Err(Error::QuizNotFound);
            }
            Ok(player_ids
                .into_iter()
                .filter(|p| p != "nobody")
                .map(|p| (p.clone(), p.len()))
                .collect())
        }
    }

    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn lookups_that_arrive_during_a_read_share_the_next_one() {
        let coalescer = Arc::new(Coalescer::default());
        let source = Gated::new();
        let lookup = |player: &'static str| {
            let (coalescer, source) = (coalescer.clone(), source.clone());
            tokio::spawn(async move { coalescer.lookup(&source, "q", player).await })
        };
        let first = lookup("ann");
        settle().await;
        assert_eq!(source.reads(), vec![vec!["ann".to_owned()]]);
        let later: Vec<_> = ["bob", "cy", "bob", "nobody"]
            .into_iter()
            .map(lookup)
            .collect();
        settle().await;
        // Nothing more is read while the first read is out.
        assert_eq!(source.reads().len(), 1);
        source.permits.add_permits(2);
        assert_eq!(first.await.expect("task").expect("lookup"), Some(3));
        let mut answers = Vec::new();
        for lookup in later {
            answers.push(lookup.await.expect("task").expect("lookup"));
        }
        assert_eq!(answers, vec![Some(3), Some(2), Some(3), None]);
        assert_eq!(
            source.reads(),
            vec![
                vec!["ann".to_owned()],
                vec!["bob".to_owned(), "cy".to_owned(), "nobody".to_owned()]
            ]
        );
        // Drained: the next lookup reads afresh.
        assert!(coalescer.waiting.lock().expect("lock").is_empty());
    }

    #[tokio::test]
    async fn a_failed_read_fails_its_batch_only() {
        let coalescer = Arc::new(Coalescer::default());
        let source = Gated::new();
        source.fail.store(1, Ordering::SeqCst);
        source.permits.add_permits(1);
        let failed = coalescer.lookup(&source, "q", "ann").await;
        assert!(matches!(failed, Err(Error::QuizNotFound)), "{failed:?}");
        source.fail.store(0, Ordering::SeqCst);
        source.permits.add_permits(1);
        assert_eq!(
            coalescer.lookup(&source, "q", "ann").await.expect("lookup"),
            Some(3)
        );
    }

    #[tokio::test]
    async fn a_cancelled_lookup_leaves_the_others_answered() {
        let coalescer = Arc::new(Coalescer::default());
        let source = Gated::new();
        let (c, s) = (coalescer.clone(), source.clone());
        let driving = tokio::spawn(async move { c.lookup(&s, "q", "ann").await });
        settle().await;
        let (c, s) = (coalescer.clone(), source.clone());
        let waiting = tokio::spawn(async move { c.lookup(&s, "q", "bob").await });
        settle().await;
        // The lookup whose arrival started the read goes away, as hyper drops a request whose
        // client left.
        driving.abort();
        source.permits.add_permits(2);
        assert_eq!(waiting.await.expect("task").expect("lookup"), Some(3));
    }

    #[tokio::test]
    async fn quizzes_are_read_apart() {
        let coalescer = Arc::new(Coalescer::default());
        let source = Gated::new();
        source.permits.add_permits(2);
        let (a, b) = tokio::join!(
            coalescer.lookup(&source, "q1", "ann"),
            coalescer.lookup(&source, "q2", "ann")
        );
        assert_eq!((a.expect("q1"), b.expect("q2")), (Some(3), Some(3)));
        assert_eq!(source.reads().len(), 2);
    }
}
