//! `mctl automation subscribe|unsubscribe|events|deliveries`: which events an
//! n8n connection's workflow receives, and how their deliveries went.

use crate::store::sql::Sql;
use clap::Subcommand;
use serde::Serialize;
use serde_json::{Value, json};

use super::Context;
use super::output::{self, Table};
use crate::domain::{Connection, Provider};
use crate::error::{Error, Result};
use crate::store::Store;
use crate::store::integrations::ConnectionUpdate;
use crate::sync::n8n::{self, EVENTS};

#[derive(Debug, Subcommand)]
pub enum AutomationCommand {
    /// Send these events to the n8n connection's workflow (`all` for every event).
    Subscribe {
        connection: String,
        #[arg(required = true, value_name = "EVENT")]
        events: Vec<String>,
    },
    /// Stop sending these events (`all` for every event).
    Unsubscribe {
        connection: String,
        #[arg(required = true, value_name = "EVENT")]
        events: Vec<String>,
    },
    /// The events there are, and which ones a connection receives.
    Events { connection: Option<String> },
    /// Recent deliveries to a connection, newest first.
    Deliveries {
        connection: String,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

#[derive(Debug, Serialize)]
struct DeliveryRow {
    id: uuid::Uuid,
    event: String,
    #[serde(with = "time::serde::rfc3339")]
    created_at: time::OffsetDateTime,
    attempts: i32,
    last_status: Option<i32>,
    last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    delivered_at: Option<time::OffsetDateTime>,
}

async fn n8n_connection(store: &Store, key: &str) -> Result<Connection> {
    let connection = store.connection_by_key(key).await?;
    if connection.provider != Provider::N8n {
        return Err(Error::usage(format!(
            "connection {} is a {} connection: automation events go to n8n connections",
            connection.key, connection.provider
        )));
    }
    Ok(connection)
}

pub async fn run(ctx: &Context, command: AutomationCommand) -> Result<()> {
    let store = ctx.store().await?;
    match command {
        AutomationCommand::Subscribe { connection, events } => {
            let c = n8n_connection(&store, &connection).await?;
            let named = n8n::parse_events(&events).map_err(Error::usage)?;
            let mut current = n8n::subscribed(&c);
            current.extend(named);
            save(ctx, &store, &c, current).await?;
        }
        AutomationCommand::Unsubscribe { connection, events } => {
            let c = n8n_connection(&store, &connection).await?;
            let named = n8n::parse_events(&events).map_err(Error::usage)?;
            let current: Vec<String> = n8n::subscribed(&c).into_iter().filter(|e| !named.contains(e)).collect();
            save(ctx, &store, &c, current).await?;
        }
        AutomationCommand::Events { connection } => {
            let subscribed = match &connection {
                Some(key) => Some(n8n::subscribed(&n8n_connection(&store, key).await?)),
                None => None,
            };
            if ctx.json {
                let rows: Vec<Value> = EVENTS
                    .iter()
                    .map(|(event, meaning)| {
                        let on = subscribed.as_ref().map(|s| s.iter().any(|e| e == event));
                        json!({ "event": event, "meaning": meaning, "subscribed": on })
                    })
                    .collect();
                return output::json(&rows);
            }
            let mut table = Table::new(&["EVENT", "SUBSCRIBED", "WHEN"]);
            for (event, meaning) in EVENTS {
                let on = match &subscribed {
                    Some(s) if s.iter().any(|e| e == event) => "yes",
                    Some(_) => "no",
                    None => "-",
                };
                table.row([event.to_string(), on.to_string(), meaning.to_string()]);
            }
            table.print();
        }
        AutomationCommand::Deliveries { connection, limit } => {
            let c = n8n_connection(&store, &connection).await?;
            let client = store.client().await.map_err(Error::from)?;
            let rows = client
                .fetch(
                    "SELECT id, event, created_at, attempts, last_status, last_error, delivered_at
                     FROM automation_delivery WHERE connection_id = $1 ORDER BY created_at DESC, id LIMIT $2",
                    &[&c.id, &limit.clamp(1, 10_000)],
                )
                .await
                .map_err(|e| Error::from(crate::store::StoreError::from(e)))?;
            let rows: Vec<DeliveryRow> = rows
                .iter()
                .map(|r| DeliveryRow {
                    id: r.get(0),
                    event: r.get(1),
                    created_at: r.get(2),
                    attempts: r.get(3),
                    last_status: r.get(4),
                    last_error: r.get(5),
                    delivered_at: r.get(6),
                })
                .collect();
            if ctx.json {
                return output::json(&rows);
            }
            let mut table = Table::new(&["DELIVERY", "EVENT", "CREATED", "ATTEMPTS", "STATUS", "LAST ERROR"]);
            for d in &rows {
                table.row([
                    d.id.to_string(),
                    d.event.clone(),
                    super::audit::short_time(d.created_at),
                    d.attempts.to_string(),
                    match (d.delivered_at, d.last_status) {
                        (Some(_), _) => "delivered".to_string(),
                        (None, Some(status)) => format!("HTTP {status}"),
                        (None, None) => "queued".to_string(),
                    },
                    output::cell(d.last_error.as_deref().unwrap_or(""), 60),
                ]);
            }
            table.print();
        }
    }
    Ok(())
}

async fn save(ctx: &Context, store: &Store, connection: &Connection, mut events: Vec<String>) -> Result<()> {
    events.sort();
    events.dedup();
    let update = ConnectionUpdate { config: Some(json!({ "events": events })), ..ConnectionUpdate::default() };
    let updated = store.update_connection(&ctx.actor(), &connection.key, update).await?;
    let events = n8n::subscribed(&updated);
    if ctx.json {
        return output::json(&json!({ "connection": updated.key, "events": events }));
    }
    if events.is_empty() {
        output::line(format!("{} receives no events", updated.key));
    } else {
        output::line(format!("{} receives {}", updated.key, events.join(", ")));
    }
    Ok(())
}
