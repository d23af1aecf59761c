//! Change notifications: a dedicated connection LISTENs on the change channel
//! and turns every NOTIFY into an action, or, with `listen_url = poll`, the
//! pool is asked twice a second whether anything committed. When the
//! database goes away it says so, retries with backoff, and says so again
//! when it is back.

use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;

use super::action::{Action, ChangeNote, DbEvent};
use crate::store::Store;
use crate::store::audit::CHANGE_CHANNEL;

const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(10);
/// How often a console that cannot LISTEN asks; a change shows within this
/// plus the refresh coalescing.
const POLL_EVERY: Duration = Duration::from_millis(500);

pub fn spawn(store: Store, tx: UnboundedSender<Action>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut delay = FIRST_RETRY;
        loop {
            let watched = if store.can_listen() {
                listen(&store, &tx, &mut delay).await
            } else {
                poll(&store, &tx, &mut delay).await
            };
            let reason = match watched {
                Ok(()) => return, // the console is gone
                Err(reason) => reason,
            };
            tracing::warn!(%reason, "change notifications lost");
            if tx.send(Action::Db(DbEvent::Lost(reason))).is_err() {
                return;
            }
            let jitter = Duration::from_millis(fastrand::u64(0..250));
            tokio::time::sleep(delay + jitter).await;
            delay = (delay * 2).min(MAX_RETRY);
        }
    })
}

async fn listen(store: &Store, tx: &UnboundedSender<Action>, delay: &mut Duration) -> Result<(), String> {
    let mut listener = store.listen(CHANGE_CHANNEL).await.map_err(|e| e.to_string())?;
    *delay = FIRST_RETRY;
    if tx.send(Action::Db(DbEvent::Connected)).is_err() {
        return Ok(());
    }
    loop {
        tokio::select! {
            payload = listener.notifications.recv() => match payload {
                Some(payload) => {
                    if let Ok(note) = serde_json::from_str::<ChangeNote>(&payload)
                        && tx.send(Action::Changed(note)).is_err()
                    {
                        return Ok(());
                    }
                }
                None => break,
            },
            // Notice a dead server even when nothing changes.
            _ = tokio::time::sleep(Duration::from_secs(15)) => listener.ping().await?,
        }
    }
    Err(listener.ended().await)
}

/// Sends a change whenever the commit mark moves.
async fn poll(store: &Store, tx: &UnboundedSender<Action>, delay: &mut Duration) -> Result<(), String> {
    let mut seen = store.change_mark().await.map_err(|e| e.to_string())?;
    *delay = FIRST_RETRY;
    if tx.send(Action::Db(DbEvent::Connected)).is_err() {
        return Ok(());
    }
    loop {
        tokio::time::sleep(POLL_EVERY).await;
        let mark = store.change_mark().await.map_err(|e| e.to_string())?;
        if mark != seen {
            seen = mark;
            if tx.send(Action::Changed(ChangeNote::polled())).is_err() {
                return Ok(());
            }
        } else if tx.is_closed() {
            return Ok(());
        }
    }
}
