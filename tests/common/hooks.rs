//! The webhook receiver on a random loopback port, and senders that sign
//! requests the way each provider (and an n8n workflow) does.

use std::net::SocketAddr;

use mission_control::domain::Provider;
use mission_control::store::Store;
use mission_control::store::integrations::NewConnection;
use mission_control::sync::webhook::verify::{hmac_hex, mc_signature};
use mission_control::sync::webhook::{ServeOptions, Server};
use serde_json::json;
use tokio::sync::oneshot;

use super::actor;

/// A running receiver; stops when dropped.
pub struct Receiver {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    _stop: oneshot::Sender<()>,
}

impl Receiver {
    pub async fn start(store: &Store) -> Receiver {
        Receiver::start_with(store, ServeOptions { listen: "127.0.0.1:0".parse().unwrap(), ..Default::default() }).await
    }

    pub async fn start_with(store: &Store, options: ServeOptions) -> Receiver {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let server = Server::bind(store.clone(), options).await.expect("bind the receiver");
        let addr = server.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        let http = reqwest::Client::builder().pool_max_idle_per_host(256).build().unwrap();
        Receiver { addr, http, _stop: stop }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// POSTs `body` with `headers`; returns the status and the JSON answer.
    pub async fn post(&self, path: &str, headers: &[(&str, String)], body: &[u8]) -> (u16, serde_json::Value) {
        let mut request = self.http.post(self.url(path)).body(body.to_vec());
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.expect("the receiver answers");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let response = self.http.get(self.url(path)).send().await.expect("the receiver answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(serde_json::Value::Null))
    }
}

/// GitHub's headers for a delivery signed with `secret`.
pub fn github(secret: &str, delivery: &str, event: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    vec![
        ("content-type", "application/json".into()),
        ("x-github-event", event.into()),
        ("x-github-delivery", delivery.into()),
        ("x-hub-signature-256", format!("sha256={}", hmac_hex(secret.as_bytes(), &[body]))),
    ]
}

/// An n8n workflow's headers for a command to `/automation/{connection}`,
/// delivery `delivery`, signed with `secret` at `timestamp`.
pub fn automation(
    secret: &str,
    connection: &str,
    delivery: &str,
    timestamp: i64,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    let path = format!("/automation/{connection}");
    vec![
        ("content-type", "application/json".into()),
        ("x-mc-timestamp", timestamp.to_string()),
        ("x-mc-delivery", delivery.to_string()),
        ("x-mc-signature", mc_signature(secret.as_bytes(), timestamp, delivery, "POST", &path, body)),
    ]
}

/// A fresh delivery id per call, as a workflow's execution id would be.
pub fn delivery() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A secret in a file, referenced as `file:/...`.
pub struct SecretFile {
    pub dir: tempfile::TempDir,
    pub reference: String,
}

pub fn secret_file(value: &str) -> SecretFile {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret");
    std::fs::write(&path, format!("{value}\n")).unwrap();
    SecretFile { reference: format!("file:{}", path.display()), dir }
}

/// Adds a connection whose webhook secret is `secret`.
pub async fn connection(
    store: &Store,
    project_id: i64,
    key: &str,
    provider: Provider,
    url: &str,
    secret: &SecretFile,
    extra: serde_json::Value,
) -> i64 {
    let mut config = json!({ "webhook_secret_ref": secret.reference });
    // Repository connections name their repository.
    if matches!(provider, Provider::Github | Provider::Gitea | Provider::Gitlab) {
        config["repo"] = json!("acme/widgets");
    }
    if let (Some(config), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
        config.extend(extra.clone());
    }
    store
        .add_connection(
            &actor("ops"),
            project_id,
            NewConnection { key: key.into(), provider, base_url: url.into(), config, secret_ref: None },
        )
        .await
        .expect("add the connection")
        .id
}
