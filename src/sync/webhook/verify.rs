//! Webhook signatures, checked over the raw body before anything parses it.
//! Every comparison is constant-time: HMACs through `Mac::verify_slice`,
//! GitLab's plain token through `subtle`.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::domain::Provider;

type HmacSha256 = Hmac<Sha256>;

/// How far an `X-MC-Timestamp` may be from now, either way.
pub const MAX_SKEW_SECONDS: i64 = 5 * 60;

/// Why a delivery was refused (also the `reason` of its audit entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    MissingSignature,
    BadSignature,
    MissingTimestamp,
    StaleTimestamp,
    /// An automation request without a usable `X-MC-Delivery`.
    MissingDelivery,
    /// An automation request whose signature does not match what was sent.
    BadAutomationSignature,
}

impl Rejection {
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::MissingSignature => "missing_signature",
            Rejection::BadSignature | Rejection::BadAutomationSignature => "bad_signature",
            Rejection::MissingTimestamp => "missing_timestamp",
            Rejection::StaleTimestamp => "stale_timestamp",
            Rejection::MissingDelivery => "missing_delivery",
        }
    }

    /// The HTTP status: 400 for a request that cannot be checked as sent, else 401.
    pub fn status(self) -> u16 {
        match self {
            Rejection::MissingDelivery => 400,
            _ => 401,
        }
    }

    /// The one-line answer the sender gets.
    pub fn message(self) -> &'static str {
        match self {
            Rejection::MissingSignature => {
                "the request carries no signature: set the webhook's secret to the connection's webhook secret"
            }
            Rejection::BadSignature => {
                "the signature does not match the body: check that the webhook's secret is the connection's webhook secret"
            }
            Rejection::BadAutomationSignature => {
                "the signature does not match the body: sign \"{X-MC-Timestamp}.{X-MC-Delivery}.POST.{path}.{hex SHA-256 of the exact body bytes}\" and send the body as raw text, not re-serialized JSON (assets/n8n/README.md)"
            }
            Rejection::MissingDelivery => {
                "X-MC-Delivery is missing or not 1-200 visible ASCII characters: give each command its own id (e.g. the execution id) and sign it"
            }
            Rejection::MissingTimestamp => {
                "X-MC-Timestamp is missing or not unix seconds: sign requests as assets/n8n/README.md describes"
            }
            Rejection::StaleTimestamp => {
                "X-MC-Timestamp is more than 5 minutes from now: check the sender's clock and do not replay requests"
            }
        }
    }
}

/// Lowercase hex HMAC-SHA256 of `parts` (concatenated) under `secret`.
pub fn hmac_hex(secret: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length");
    for part in parts {
        mac.update(part);
    }
    hex(&mac.finalize().into_bytes())
}

/// What `X-MC-Signature` signs, in both directions:
/// `"{timestamp}.{delivery}.{METHOD}.{path}.{hex SHA-256 of the body}"`.
/// The delivery id is the replay key, so it is signed with the timestamp;
/// the method and path bind the signature to one endpoint. The body enters
/// as its hash, which n8n's Crypto node computes from the raw body's binary.
/// Unambiguous: the timestamp is digits, and what follows the delivery id is
/// fixed by the endpoint plus 64 hex digits.
pub fn signing_string(timestamp: &str, delivery: &str, method: &str, path: &str, body: &[u8]) -> String {
    format!("{timestamp}.{delivery}.{method}.{path}.{}", hex(&Sha256::digest(body)))
}

/// The `X-MC-Signature` value: `sha256=` + hex HMAC-SHA256 of [`signing_string`].
pub fn mc_signature(secret: &[u8], timestamp: i64, delivery: &str, method: &str, path: &str, body: &[u8]) -> String {
    let signed = signing_string(&timestamp.to_string(), delivery, method, path, body);
    format!("sha256={}", hmac_hex(secret, &[signed.as_bytes()]))
}

/// Checks a hex HMAC (with or without a `sha256=` prefix) over `parts`.
fn check_hmac(secret: &[u8], parts: &[&[u8]], given: &str) -> Result<(), Rejection> {
    let given = given.trim();
    let given = given.strip_prefix("sha256=").unwrap_or(given);
    let tag = unhex(given).ok_or(Rejection::BadSignature)?;
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length");
    for part in parts {
        mac.update(part);
    }
    mac.verify_slice(&tag).map_err(|_| Rejection::BadSignature)
}

/// Headers a verifier reads, by lowercase name.
pub trait Headers {
    fn get(&self, name: &str) -> Option<&str>;
}

impl Headers for hyper::HeaderMap {
    fn get(&self, name: &str) -> Option<&str> {
        hyper::HeaderMap::get(self, name).and_then(|v| v.to_str().ok())
    }
}

impl<'a> Headers for [(&'a str, &'a str)] {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
    }
}

/// Checks a provider's webhook against the connection's webhook secret.
pub fn verify_provider(
    provider: Provider,
    secret: &str,
    headers: &(impl Headers + ?Sized),
    body: &[u8],
) -> Result<(), Rejection> {
    let key = secret.as_bytes();
    match provider {
        Provider::Github => {
            let given = headers.get("x-hub-signature-256").ok_or(Rejection::MissingSignature)?;
            if !given.trim().starts_with("sha256=") {
                return Err(Rejection::BadSignature);
            }
            check_hmac(key, &[body], given)
        }
        Provider::Gitea => {
            // Forgejo sends both; when its own header is there, it is the one checked.
            let given = headers
                .get("x-forgejo-signature")
                .or_else(|| headers.get("x-gitea-signature"))
                .ok_or(Rejection::MissingSignature)?;
            check_hmac(key, &[body], given)
        }
        Provider::Gitlab => {
            let given = headers.get("x-gitlab-token").ok_or(Rejection::MissingSignature)?;
            if bool::from(given.as_bytes().ct_eq(key)) { Ok(()) } else { Err(Rejection::BadSignature) }
        }
        Provider::Plane => {
            let given = headers.get("x-plane-signature").ok_or(Rejection::MissingSignature)?;
            check_hmac(key, &[body], given)
        }
        // n8n sends commands to /automation, checked by `verify_automation`.
        Provider::N8n => Err(Rejection::MissingSignature),
    }
}

/// Checks an inbound automation request to `method path`: `X-MC-Timestamp`
/// within five minutes of `now`, an `X-MC-Delivery`, and `X-MC-Signature`
/// over all of them and the body ([`signing_string`]). Returns the delivery id.
pub fn verify_automation(
    secret: &str,
    headers: &(impl Headers + ?Sized),
    method: &str,
    path: &str,
    body: &[u8],
    now: i64,
) -> Result<String, Rejection> {
    let stamp = headers.get("x-mc-timestamp").map(str::trim).ok_or(Rejection::MissingTimestamp)?;
    let timestamp: i64 = stamp.parse().map_err(|_| Rejection::MissingTimestamp)?;
    let delivery = automation_delivery(headers).ok_or(Rejection::MissingDelivery)?;
    let given = headers.get("x-mc-signature").ok_or(Rejection::MissingSignature)?;
    if !given.trim().starts_with("sha256=") {
        return Err(Rejection::BadAutomationSignature);
    }
    // The signature first: an unsigned request learns nothing about the clock.
    let signed = signing_string(stamp, delivery, method, path, body);
    check_hmac(secret.as_bytes(), &[signed.as_bytes()], given).map_err(|_| Rejection::BadAutomationSignature)?;
    if (now - timestamp).abs() > MAX_SKEW_SECONDS {
        return Err(Rejection::StaleTimestamp);
    }
    Ok(delivery.to_string())
}

/// An automation request's `X-MC-Delivery`, when it is usable as a key.
pub fn automation_delivery(headers: &(impl Headers + ?Sized)) -> Option<&str> {
    headers
        .get("x-mc-delivery")
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 200 && v.chars().all(|c| c.is_ascii_graphic()))
}

/// The key a delivery is deduplicated by: the provider's delivery id, or a
/// hash of the body where there is none (a redelivery repeats the body).
pub fn delivery_key(provider: Provider, headers: &(impl Headers + ?Sized), body: &[u8]) -> String {
    let names: &[&str] = match provider {
        Provider::Github => &["x-github-delivery"],
        Provider::Gitea => &["x-gitea-delivery", "x-forgejo-delivery", "x-github-delivery"],
        Provider::Gitlab => &["idempotency-key", "x-gitlab-event-uuid"],
        Provider::Plane => &["x-plane-delivery"],
        Provider::N8n => &["x-mc-delivery"],
    };
    names
        .iter()
        .filter_map(|name| headers.get(name))
        .map(str::trim)
        .find(|v| !v.is_empty() && v.len() <= 200 && v.chars().all(|c| c.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| format!("sha256:{}", hex(&Sha256::digest(body))))
}

/// The provider's event name, when it sends one.
pub fn event_name(provider: Provider, headers: &(impl Headers + ?Sized)) -> Option<String> {
    let names: &[&str] = match provider {
        Provider::Github => &["x-github-event"],
        Provider::Gitea => &["x-gitea-event", "x-forgejo-event", "x-github-event"],
        Provider::Gitlab => &["x-gitlab-event"],
        Provider::Plane => &["x-plane-event"],
        Provider::N8n => &[],
    };
    names
        .iter()
        .filter_map(|name| headers.get(name))
        .map(|v| crate::domain::text::clip(v.trim(), 100).into_owned())
        .find(|v| !v.is_empty() && !v.chars().any(char::is_control))
}

/// Whether a provider's event can change what mctl syncs (then it queues the
/// objects it names, or the connection's pull). Everything else is stored
/// for operators to read and queues nothing: a star or a label edit is not
/// worth a pass. Names as each provider sends them in its event header
/// (docs/conformance/webhooks.md cites where each list was checked).
pub fn event_syncs(provider: Provider, event: &str) -> bool {
    let synced: &[&str] = match provider {
        // Issues, and the pass's delivery feeds: Actions runs, deployments, releases.
        Provider::Github => &["issues", "workflow_run", "deployment", "deployment_status", "release"],
        // Gitea's X-Gitea-Event folds issue_assign, issue_label and issue_milestone into "issues".
        Provider::Gitea => &["issues", "release"],
        Provider::Gitlab => {
            &["Issue Hook", "Confidential Issue Hook", "Pipeline Hook", "Deployment Hook", "Release Hook"]
        }
        Provider::Plane => &["issue", "cycle", "module", "cycle_issue", "module_issue", "project"],
        Provider::N8n => &[],
    };
    synced.contains(&event)
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 128 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    text.as_bytes().chunks(2).map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "It's a Secret to Everybody";
    const BODY: &[u8] = b"Hello, World!";
    const GITHUB_VECTOR: &str = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    fn headers(pairs: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
        pairs.to_vec()
    }

    fn view<'a>(pairs: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
        pairs.iter().map(|(n, v)| (*n, v.as_str())).collect()
    }

    #[test]
    fn githubs_published_test_vector_verifies() {
        assert_eq!(hmac_hex(SECRET.as_bytes(), &[BODY]), GITHUB_VECTOR);
        let given = headers(&[("X-Hub-Signature-256", format!("sha256={GITHUB_VECTOR}"))]);
        assert_eq!(verify_provider(Provider::Github, SECRET, view(&given).as_slice(), BODY), Ok(()));
    }

    #[test]
    fn a_tampered_body_or_signature_or_secret_is_refused() {
        let given = headers(&[("x-hub-signature-256", format!("sha256={GITHUB_VECTOR}"))]);
        let h = view(&given);
        assert_eq!(
            verify_provider(Provider::Github, SECRET, h.as_slice(), b"Hello, World?"),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            verify_provider(Provider::Github, SECRET, h.as_slice(), b"Hello, World! "),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            verify_provider(Provider::Github, "another secret", h.as_slice(), BODY),
            Err(Rejection::BadSignature)
        );
        let flipped = format!("sha256={}0", &GITHUB_VECTOR[..63]);
        let given = headers(&[("x-hub-signature-256", flipped)]);
        assert_eq!(
            verify_provider(Provider::Github, SECRET, view(&given).as_slice(), BODY),
            Err(Rejection::BadSignature)
        );
        // GitHub's header needs its prefix; garbage and odd lengths are refused, never a panic.
        for bad in [GITHUB_VECTOR.to_string(), "sha256=zz".into(), "sha256=abc".into(), "sha256=".into(), "é".into()] {
            let given = headers(&[("x-hub-signature-256", bad)]);
            assert_eq!(
                verify_provider(Provider::Github, SECRET, view(&given).as_slice(), BODY),
                Err(Rejection::BadSignature)
            );
        }
        let none: [(&str, &str); 0] = [];
        assert_eq!(verify_provider(Provider::Github, SECRET, none.as_slice(), BODY), Err(Rejection::MissingSignature));
    }

    #[test]
    fn gitea_forgejo_and_plane_sign_the_body_in_bare_hex() {
        let sig = hmac_hex(b"s3cret", &[b"{\"a\":1}"]);
        for (provider, header) in [
            (Provider::Gitea, "X-Gitea-Signature"),
            (Provider::Gitea, "X-Forgejo-Signature"),
            (Provider::Plane, "X-Plane-Signature"),
        ] {
            let given = headers(&[(header, sig.clone())]);
            assert_eq!(verify_provider(provider, "s3cret", view(&given).as_slice(), b"{\"a\":1}"), Ok(()), "{header}");
            assert_eq!(
                verify_provider(provider, "s3cret", view(&given).as_slice(), b"{\"a\":2}"),
                Err(Rejection::BadSignature),
                "{header}"
            );
        }
        // A bad Forgejo signature is not rescued by a good Gitea one.
        let given = headers(&[("x-forgejo-signature", "00".repeat(32)), ("x-gitea-signature", sig)]);
        assert_eq!(
            verify_provider(Provider::Gitea, "s3cret", view(&given).as_slice(), b"{\"a\":1}"),
            Err(Rejection::BadSignature)
        );
    }

    #[test]
    fn gitlabs_token_must_equal_the_secret() {
        let given = headers(&[("X-Gitlab-Token", "tok-123".into())]);
        assert_eq!(verify_provider(Provider::Gitlab, "tok-123", view(&given).as_slice(), b"{}"), Ok(()));
        assert_eq!(
            verify_provider(Provider::Gitlab, "tok-1234", view(&given).as_slice(), b"{}"),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            verify_provider(Provider::Gitlab, "tok-12", view(&given).as_slice(), b"{}"),
            Err(Rejection::BadSignature)
        );
    }

    #[test]
    fn automation_requests_sign_timestamp_delivery_method_path_and_body_and_must_be_fresh() {
        let now = 1_800_000_000;
        let body = br#"{"command":"create_task","title":"x"}"#;
        let path = "/automation/flows";
        let sign = |ts: i64, delivery: &str| {
            headers(&[
                ("X-MC-Timestamp", ts.to_string()),
                ("X-MC-Delivery", delivery.to_string()),
                ("X-MC-Signature", mc_signature(b"k", ts, delivery, "POST", path, body)),
            ])
        };
        let check = |h: &[(&'static str, String)], body: &[u8]| {
            verify_automation("k", view(h).as_slice(), "POST", path, body, now)
        };
        assert_eq!(check(&sign(now, "d-1"), body), Ok("d-1".to_string()));
        assert_eq!(check(&sign(now - 299, "d-1"), body), Ok("d-1".to_string()));
        assert_eq!(check(&sign(now - 301, "d-1"), body), Err(Rejection::StaleTimestamp));
        assert_eq!(check(&sign(now + 301, "d-1"), body), Err(Rejection::StaleTimestamp));
        assert_eq!(check(&sign(now, "d-1"), b"{}"), Err(Rejection::BadAutomationSignature));
        // Each signed part, changed after signing, breaks the signature.
        let mut moved = sign(now - 10, "d-1");
        moved[0].1 = now.to_string();
        assert_eq!(check(&moved, body), Err(Rejection::BadAutomationSignature));
        let mut renamed = sign(now, "d-1");
        renamed[1].1 = "d-2".into();
        assert_eq!(check(&renamed, body), Err(Rejection::BadAutomationSignature));
        let elsewhere =
            verify_automation("k", view(&sign(now, "d-1")).as_slice(), "POST", "/automation/other", body, now);
        assert_eq!(elsewhere, Err(Rejection::BadAutomationSignature));
        let put = verify_automation("k", view(&sign(now, "d-1")).as_slice(), "PUT", path, body, now);
        assert_eq!(put, Err(Rejection::BadAutomationSignature));
        // Without a delivery id (or with an unusable one) nothing is checked.
        let mut undelivered = sign(now, "d-1");
        undelivered.remove(1);
        assert_eq!(check(&undelivered, body), Err(Rejection::MissingDelivery));
        let mut spaced = sign(now, "d-1");
        spaced[1].1 = "a b".into();
        assert_eq!(check(&spaced, body), Err(Rejection::MissingDelivery));
        assert_eq!(Rejection::MissingDelivery.status(), 400);
        let mut unsigned = sign(now, "d-1");
        unsigned.remove(2);
        assert_eq!(check(&unsigned, body), Err(Rejection::MissingSignature));
        let mut undated = sign(now, "d-1");
        undated.remove(0);
        assert_eq!(check(&undated, body), Err(Rejection::MissingTimestamp));
        // The recipe, spelled out.
        let digest = hex(&Sha256::digest(body));
        let string = format!("{now}.d-1.POST./automation/flows.{digest}");
        assert_eq!(signing_string(&now.to_string(), "d-1", "POST", path, body), string);
        let expected = format!("sha256={}", hmac_hex(b"k", &[string.as_bytes()]));
        assert_eq!(mc_signature(b"k", now, "d-1", "POST", path, body), expected);
    }

    #[test]
    fn only_events_that_can_change_synced_objects_queue_work() {
        for event in ["issues", "workflow_run", "deployment", "deployment_status", "release"] {
            assert!(event_syncs(Provider::Github, event), "{event}");
        }
        for event in ["ping", "star", "watch", "label", "issue_comment", "push", "pull_request", "fork"] {
            assert!(!event_syncs(Provider::Github, event), "{event}");
        }
        assert!(event_syncs(Provider::Gitea, "issues") && !event_syncs(Provider::Gitea, "push"));
        assert!(event_syncs(Provider::Gitlab, "Issue Hook") && !event_syncs(Provider::Gitlab, "Note Hook"));
        assert!(event_syncs(Provider::Plane, "cycle_issue") && !event_syncs(Provider::Plane, "issue_comment"));
    }

    #[test]
    fn delivery_keys_come_from_the_providers_header_or_the_body() {
        let given = headers(&[("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958".into())]);
        assert_eq!(
            delivery_key(Provider::Github, view(&given).as_slice(), b"{}"),
            "72d3162e-cc78-11e3-81ab-4c9367dc0958"
        );
        let given = headers(&[("Idempotency-Key", "idem".into()), ("X-Gitlab-Event-UUID", "uuid".into())]);
        assert_eq!(delivery_key(Provider::Gitlab, view(&given).as_slice(), b"{}"), "idem");
        let none: [(&str, &str); 0] = [];
        let a = delivery_key(Provider::Gitlab, none.as_slice(), b"{\"a\":1}");
        assert_eq!(a, delivery_key(Provider::Gitlab, none.as_slice(), b"{\"a\":1}"));
        assert_ne!(a, delivery_key(Provider::Gitlab, none.as_slice(), b"{\"a\":2}"));
        assert!(a.starts_with("sha256:") && a.len() == 7 + 64);
        // A hostile header falls back to the hash.
        let given = headers(&[("X-Plane-Delivery", "bad key\twith controls".into())]);
        assert!(delivery_key(Provider::Plane, view(&given).as_slice(), b"x").starts_with("sha256:"));
    }
}
