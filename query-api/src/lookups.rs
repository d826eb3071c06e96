//! Lookups of one quiz's players share Redis reads, as a database's group commit shares
//! flushes: a lookup reads at once while fewer than a few reads of its quiz are out, and
//! otherwise joins the next batch. One quiet request costs one round trip as before; a stadium
//! of phones asking their rank costs one script per batch, not one per phone.
//!
//! Hand-written because the batching crates (`dataloader`) hold a lock across the read and
//! panic when a caller that was driving a batch is cancelled, which hyper does to every request
//! whose client leaves. Here the reads run in a task of their own, so a cancelled lookup only
//! drops its own answer.

use std::collections::HashMap;
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

/// One quiz's lookups: those waiting for a read, and the reads out.
struct Queue<V> {
    waiting: Vec<Waiter<V>>,
    reading: usize,
}

/// Per quiz, the lookups waiting for the next read. A quiz has an entry exactly while a read
/// of it is out.
pub struct Coalescer<V> {
    queues: Mutex<HashMap<String, Queue<V>>>,
    /// Reads of one quiz out at once. More than one keeps Redis and HTTP working side by side:
    /// with a single read out, requests would wait for it while Redis waits for them.
    readers: usize,
}

impl<V> std::fmt::Debug for Coalescer<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalescer")
            .field("readers", &self.readers)
            .finish_non_exhaustive()
    }
}

impl<V> Coalescer<V> {
    pub fn new(readers: usize) -> Self {
        Self {
            queues: Mutex::new(HashMap::new()),
            readers: readers.max(1),
        }
    }

    fn queues(&self) -> std::sync::MutexGuard<'_, HashMap<String, Queue<V>>> {
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<V: Clone + Send + 'static> Coalescer<V> {
    /// `player_id`'s value in `quiz_id`, or `None` if it has none, read together with the
    /// other lookups of the quiz waiting at the time.
    pub async fn lookup<R: BatchRead<V>>(
        self: &Arc<Self>,
        source: &R,
        quiz_id: &str,
        player_id: &str,
    ) -> Result<Option<V>> {
        let (answer, answered) = oneshot::channel();
        let read_now = {
            let mut queues = self.queues();
            let queue = queues.entry(quiz_id.to_owned()).or_insert_with(|| Queue {
                waiting: Vec::new(),
                reading: 0,
            });
            queue.waiting.push((player_id.to_owned(), answer));
            let read_now = queue.reading < self.readers;
            if read_now {
                queue.reading += 1;
            }
            read_now
        };
        if read_now {
            let reader = Reader {
                coalescer: self.clone(),
                quiz_id: quiz_id.to_owned(),
                done: false,
            };
            drop(tokio::spawn(reader.run(source.clone())));
        }
        // A reader only goes without answering if its read panicked.
        answered
            .await
            .unwrap_or_else(|_| Err(Error::SharedReadFailed))
    }
}

/// A task that reads one quiz's waiting lookups, batch after batch, until none waits.
struct Reader<V> {
    coalescer: Arc<Coalescer<V>>,
    quiz_id: String,
    done: bool,
}

impl<V: Clone + Send + 'static> Reader<V> {
    async fn run<R: BatchRead<V>>(mut self, source: R) {
        loop {
            let Some(batch) = self.next_batch() else {
                self.done = true;
                return;
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

impl<V> Reader<V> {
    /// Takes every waiting lookup; or, if none waits, signs this reader off.
    fn next_batch(&self) -> Option<Vec<Waiter<V>>> {
        let mut queues = self.coalescer.queues();
        let queue = queues.get_mut(&self.quiz_id)?;
        if queue.waiting.is_empty() {
            self.leave(&mut queues);
            return None;
        }
        Some(std::mem::take(&mut queue.waiting))
    }

    /// This reader stops; the last one out removes the quiz's entry, dropping any lookup still
    /// waiting (their callers get an error) rather than leaving it unread.
    fn leave(&self, queues: &mut HashMap<String, Queue<V>>) {
        if let Some(queue) = queues.get_mut(&self.quiz_id) {
            queue.reading = queue.reading.saturating_sub(1);
            if queue.reading == 0 {
                let _ = queues.remove(&self.quiz_id);
            }
        }
    }
}

impl<V> Drop for Reader<V> {
    fn drop(&mut self) {
        if !self.done {
            // The read panicked or the runtime is going away.
            self.leave(&mut self.coalescer.queues());
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
        let coalescer = Arc::new(Coalescer::new(1));
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
        assert!(coalescer.queues().is_empty());
    }

    #[tokio::test]
    async fn a_failed_read_fails_its_batch_only() {
        let coalescer = Arc::new(Coalescer::new(1));
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
        let coalescer = Arc::new(Coalescer::new(1));
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
    async fn up_to_the_readers_read_at_once_and_the_rest_share_a_read() {
        let coalescer = Arc::new(Coalescer::new(2));
        let source = Gated::new();
        let lookup = |player: &'static str| {
            let (coalescer, source) = (coalescer.clone(), source.clone());
            tokio::spawn(async move { coalescer.lookup(&source, "q", player).await })
        };
        let ann = lookup("ann");
        settle().await;
        let bob = lookup("bob");
        settle().await;
        assert_eq!(source.reads().len(), 2, "two readers read at once");
        let first = [ann, bob];
        let later = [lookup("cy"), lookup("dee")];
        settle().await;
        assert_eq!(source.reads().len(), 2, "a third waits for a reader");
        source.permits.add_permits(3);
        for lookup in first.into_iter().chain(later) {
            assert!(lookup.await.expect("task").expect("lookup").is_some());
        }
        let reads = source.reads();
        assert_eq!(reads.len(), 3);
        assert_eq!(reads[2], vec!["cy".to_owned(), "dee".to_owned()]);
        assert!(coalescer.queues().is_empty());
    }

    #[tokio::test]
    async fn quizzes_are_read_apart() {
        let coalescer = Arc::new(Coalescer::new(1));
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
