//! Inbound webhook verification, as its senders specify it, and what a verified request
//! becomes: one event with an id (for replay refusal), a type, a key and a payload.
//!
//! Schemes (`config.scheme`):
//! - `standard-webhooks`: `webhook-id`, `webhook-timestamp`, `webhook-signature` (or the
//!   `svix-` names); `v1` HMAC-SHA256 with a `whsec_` secret, `v1a` ed25519 with a `whpk_`
//!   public key; any of several signatures; the timestamp within `tolerance` (default 5 min).
//! - `github`: `X-Hub-Signature-256: sha256=<hex>` over the body; type from `X-GitHub-Event`,
//!   id from `X-GitHub-Delivery`.
//! - `stripe`: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=…]` over `<t>.<body>`; tolerance.
//! - `hmac`: a header (`header`), algorithm `sha1`/`sha256`/`sha512`, `hex` or `base64`, an
//!   optional `prefix` (`sha256=`), and a signed-content `template` (`{body}`, `{header:Name}`;
//!   Slack: `v0:{header:X-Slack-Request-Timestamp}:{body}` with prefix `v0=`);
//!   `timestamp_header` adds a tolerance check.
//! - `basic`: `Authorization: Basic` with a secret `user:password`.
//! - `api-key`: the secret in `header` (default `x-api-key`) or as `Authorization: Bearer`.
//!
//! Several `secrets` may be valid at once (rotation). Every comparison of a secret or a
//! signature is constant-time.

mod config;
mod schemes;

pub use config::{Config, ConfigError, Locator, Scheme};

/// A request as the gateway received it.
pub struct Request<'a> {
    /// Header names in any case; a name may repeat.
    pub headers: &'a [(String, Vec<u8>)],
    pub body: &'a [u8],
}

impl Request<'_> {
    /// The one value of header `name` (any case); `Err` when it is there more than once.
    pub fn header(&self, name: &str) -> Result<Option<&str>, Refusal> {
        let mut found = None;
        for (n, v) in self.headers {
            if n.eq_ignore_ascii_case(name) {
                if found.is_some() {
                    return Err(Refusal::bad_request(
                        "duplicate-header",
                        format!("`{name}` is given more than once"),
                    ));
                }
                found = Some(std::str::from_utf8(v).map_err(|_| {
                    Refusal::bad_request("bad-header", format!("`{name}` is not UTF-8"))
                })?);
            }
        }
        Ok(found)
    }

    fn required(&self, name: &str) -> Result<&str, Refusal> {
        self.header(name)?.ok_or_else(|| {
            Refusal::unauthorized(
                "missing-signature",
                format!("the `{name}` header is missing"),
            )
        })
    }
}

/// Why a request is not accepted: an HTTP status, a stable code and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            status: 401,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            status: 400,
            code,
            message: message.into(),
        }
    }
}

/// A verified request, as the event to append.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    /// The sender's id for this delivery (`webhook-id`, `X-GitHub-Delivery`, the Stripe
    /// event's `id`): a second request with the same id is a replay.
    pub id: Option<String>,
    pub event_type: String,
    pub key: Option<String>,
    /// The body: JSON as sent, or a JSON string holding a body that is not JSON.
    pub payload: serde_json::Value,
    /// The body as JSON text when it was JSON (as sent, not re-serialized).
    pub payload_text: Option<String>,
    /// When the sender signed it (seconds since the epoch), where the scheme says.
    pub signed_at: Option<i64>,
}

/// Verify `request` under `config` at `now` (seconds since the epoch), and read the event out
/// of it.
pub fn accept(config: &Config, request: &Request, now: i64) -> Result<Accepted, Refusal> {
    let signed = schemes::verify(config, request, now)?;
    let (payload, payload_text) = match serde_json::from_slice::<serde_json::Value>(request.body) {
        Ok(v) => (v, std::str::from_utf8(request.body).ok().map(str::to_owned)),
        Err(_) => (
            serde_json::Value::String(String::from_utf8_lossy(request.body).into_owned()),
            None,
        ),
    };
    let find = |locator: &Option<Locator>| -> Result<Option<String>, Refusal> {
        locator
            .as_ref()
            .map(|l| l.find(request, &payload))
            .transpose()
            .map(Option::flatten)
    };
    let id = match find(&config.id)? {
        Some(id) => Some(id),
        None => signed.id,
    };
    let event_type = match find(&config.event_type)? {
        Some(t) => t,
        None => signed.event_type.unwrap_or_else(|| "webhook".into()),
    };
    Ok(Accepted {
        id,
        event_type,
        key: find(&config.key)?,
        payload,
        payload_text,
        signed_at: signed.signed_at,
    })
}

/// What the scheme itself says about the request.
#[derive(Debug, Default)]
pub(crate) struct Signed {
    pub id: Option<String>,
    pub event_type: Option<String>,
    pub signed_at: Option<i64>,
}

#[cfg(test)]
fn schemes_mac_for_tests(algorithm: &str, key: &[u8], data: &[u8]) -> Vec<u8> {
    let a = match algorithm {
        "sha1" => config::Algorithm::Sha1,
        "sha512" => config::Algorithm::Sha512,
        _ => config::Algorithm::Sha256,
    };
    schemes::mac(a, key, &[data])
}

#[cfg(test)]
mod tests;
