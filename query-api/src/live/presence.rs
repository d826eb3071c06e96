//! Who is connected: every open player stream marks its player present in Redis, so the lobby
//! and the dashboards of every query API instance see it. One task per instance writes the
//! marks: at the first stream of a player, at the last one's end, and a refresh of all of them
//! in one pipeline every [`REFRESH`]. A mark expires [`TTL`] after its last refresh, so the
//! players of an instance that died without a word drop out on their own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::read_model::ReadModel;
use crate::reads::now_millis;

/// How often an instance refreshes the marks of its players.
const REFRESH: Duration = Duration::from_secs(10);
/// How long a mark lasts without a refresh.
const TTL: Duration = Duration::from_secs(30);

type Player = (String, String);

#[derive(Debug)]
enum Change {
    Arrived(Player),
    Left(Player),
}

/// The players with a stream open on this instance, and how many streams each has open.
#[derive(Debug, Clone)]
pub(super) struct Presence {
    held: Arc<Mutex<HashMap<Player, usize>>>,
    changes: mpsc::UnboundedSender<Change>,
}

/// Held by a player stream: the player is present while any of their guards lives.
#[derive(Debug)]
pub(super) struct Here {
    presence: Presence,
    player: Player,
}

impl Drop for Here {
    fn drop(&mut self) {
        let mut held = self
            .presence
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = held.get_mut(&self.player) {
            *count -= 1;
            if *count == 0 {
                let _ = held.remove(&self.player);
                let _ = self
                    .presence
                    .changes
                    .send(Change::Left(self.player.clone()));
            }
        }
    }
}

fn ttl_from_now() -> i64 {
    now_millis() + i64::try_from(TTL.as_millis()).unwrap_or(i64::MAX)
}

impl Presence {
    /// Starts the task that writes the marks; it ends with `shutdown`.
    pub(super) fn start(read_model: ReadModel, shutdown: CancellationToken) -> Self {
        let (changes, received) = mpsc::unbounded_channel();
        let presence = Self {
            held: Arc::default(),
            changes,
        };
        drop(tokio::spawn(
            presence.clone().write(read_model, received, shutdown),
        ));
        presence
    }

    /// Marks the player present until the returned guard is dropped.
    pub(super) fn arrive(&self, quiz_id: &str, player_id: &str) -> Here {
        let player = (quiz_id.to_owned(), player_id.to_owned());
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let count = held.entry(player.clone()).or_default();
        *count += 1;
        if *count == 1 {
            let _ = self.changes.send(Change::Arrived(player.clone()));
        }
        Here {
            presence: self.clone(),
            player,
        }
    }

    fn present(&self) -> Vec<Player> {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.keys().cloned().collect()
    }

    async fn write(
        self,
        read_model: ReadModel,
        mut received: mpsc::UnboundedReceiver<Change>,
        shutdown: CancellationToken,
    ) {
        let mut refresh = tokio::time::interval(REFRESH);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let written = tokio::select! {
                () = shutdown.cancelled() => break,
                change = received.recv() => match change {
                    Some(Change::Arrived((quiz_id, player_id))) => {
                        let marked = read_model
                            .mark_present(&[(quiz_id.clone(), player_id)], ttl_from_now())
                            .await;
                        match marked {
                            Ok(()) => read_model.presence_changed(&quiz_id).await,
                            Err(e) => Err(e),
                        }
                    }
                    Some(Change::Left((quiz_id, player_id))) => {
                        // Another instance may still hold a stream of this player; its next
                        // refresh marks them again.
                        match read_model.mark_absent(&quiz_id, &player_id).await {
                            Ok(()) => read_model.presence_changed(&quiz_id).await,
                            Err(e) => Err(e),
                        }
                    }
                    None => break,
                },
                _ = refresh.tick() => {
                    let present = self.present();
                    if present.is_empty() {
                        Ok(())
                    } else {
                        read_model.mark_present(&present, ttl_from_now()).await
                    }
                }
            };
            if let Err(cause) = written {
                // The marks expire by themselves; the next refresh writes them again.
                tracing::warn!(%cause, "presence write failed");
            }
        }
        // On a clean shutdown, the players leave at once rather than when their marks expire.
        let mut left = std::collections::BTreeSet::new();
        for (quiz_id, player_id) in self.present() {
            if read_model.mark_absent(&quiz_id, &player_id).await.is_ok() {
                let _ = left.insert(quiz_id);
            }
        }
        for quiz_id in left {
            let _ = read_model.presence_changed(&quiz_id).await;
        }
    }
}
