//! LISTEN on a session connection of its own ([`Store::dedicated_connection`],
//! so `listen_url` when one is set). The payloads arrive on a channel and the
//! connection's end is told once, so the console, `audit tail --follow` and
//! the sync worker only decide what a notification means to them.

use futures_util::StreamExt;
use tokio::sync::mpsc::UnboundedReceiver;

use super::{Store, StoreResult};

/// A live LISTEN. Dropping it closes the connection.
pub struct Listener {
    client: tokio_postgres::Client,
    /// Each notification's payload; closes when the connection ends.
    pub notifications: UnboundedReceiver<String>,
    /// Drives the connection; returns why it ended.
    driver: tokio::task::JoinHandle<String>,
}

impl Store {
    /// Listens on `channel` until the returned [`Listener`] is dropped.
    pub async fn listen(&self, channel: &str) -> StoreResult<Listener> {
        let (client, mut connection) = self.dedicated_connection().await?;
        let (payloads, notifications) = tokio::sync::mpsc::unbounded_channel();
        // Driven on its own task so the LISTEN below gets its answer.
        let driver = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                        if payloads.send(n.payload().to_string()).is_err() {
                            return "nobody is listening any more".to_string();
                        }
                    }
                    Ok(_) => {}
                    Err(e) => return e.to_string(),
                }
            }
            "the connection closed".to_string()
        });
        client.batch_execute(&format!("LISTEN {channel}")).await?;
        Ok(Listener { client, notifications, driver })
    }
}

impl Listener {
    /// Asks the server something, so a connection with nothing to say is
    /// still noticed when it dies.
    pub async fn ping(&self) -> Result<(), String> {
        self.client.simple_query("SELECT 1").await.map(drop).map_err(|e| e.to_string())
    }

    /// Why the connection ended, once `notifications` has closed.
    pub async fn ended(self) -> String {
        drop(self.client);
        self.driver.await.unwrap_or_else(|e| e.to_string())
    }
}
