//! Each scheme's signature check, as its sender documents it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use subtle::ConstantTimeEq;

use crate::config::{Algorithm, HmacSpec, standard_key};
use crate::{Config, Refusal, Request, Scheme, Signed};

pub(crate) fn mac(algorithm: Algorithm, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    macro_rules! run {
        ($h:ty) => {{
            let mut m = <Hmac<$h>>::new_from_slice(key).expect("HMAC takes any key length");
            for p in parts {
                m.update(p);
            }
            m.finalize().into_bytes().to_vec()
        }};
    }
    match algorithm {
        Algorithm::Sha1 => run!(sha1::Sha1),
        Algorithm::Sha256 => run!(sha2::Sha256),
        Algorithm::Sha512 => run!(sha2::Sha512),
    }
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn timestamp(value: &str, what: &str) -> Result<i64, Refusal> {
    value.trim().parse::<i64>().map_err(|_| {
        Refusal::bad_request("bad-timestamp", format!("{what} is not a Unix timestamp"))
    })
}

fn fresh(config: &Config, at: i64, now: i64) -> Result<(), Refusal> {
    if (now - at).abs() > config.tolerance {
        return Err(Refusal::unauthorized(
            "stale-timestamp",
            format!(
                "the signed timestamp is {} s from now; the tolerance is {} s",
                now - at,
                config.tolerance
            ),
        ));
    }
    Ok(())
}

fn no_match() -> Refusal {
    Refusal::unauthorized(
        "bad-signature",
        "no signature matches any of the source's secrets",
    )
}

pub(crate) fn verify(config: &Config, r: &Request, now: i64) -> Result<Signed, Refusal> {
    match &config.scheme {
        Scheme::StandardWebhooks => standard_webhooks(config, r, now),
        Scheme::GitHub => github(config, r),
        Scheme::Stripe => stripe(config, r, now),
        Scheme::Hmac(spec) => hmac_generic(config, spec, r, now),
        Scheme::Basic => basic(config, r),
        Scheme::ApiKey { header } => api_key(config, header, r),
    }
}

/// <https://www.standardwebhooks.com/>: `{id}.{timestamp}.{body}`, signatures `v1,<b64>`
/// (HMAC-SHA256) or `v1a,<b64>` (ed25519), space-separated. Svix sends the same with `svix-`
/// header names.
fn standard_webhooks(config: &Config, r: &Request, now: i64) -> Result<Signed, Refusal> {
    let prefix = if r.header("webhook-id")?.is_some() {
        "webhook"
    } else {
        "svix"
    };
    let id = r.required(&format!("{prefix}-id"))?;
    let ts_text = r.required(&format!("{prefix}-timestamp"))?;
    let signatures = r.required(&format!("{prefix}-signature"))?;
    let ts = timestamp(ts_text, "webhook-timestamp")?;
    fresh(config, ts, now)?;
    if signatures.len() > 8192 {
        return Err(Refusal::bad_request(
            "bad-signature",
            "webhook-signature is over 8 KiB",
        ));
    }
    let signed: [&[u8]; 5] = [id.as_bytes(), b".", ts_text.as_bytes(), b".", r.body];
    let mut content = Vec::new();
    for secret in &config.secrets {
        let key = standard_key(secret).map_err(|e| Refusal::unauthorized("bad-secret", e))?;
        for sig in signatures.split(' ').filter(|s| !s.is_empty()).take(16) {
            let Some((version, b64)) = sig.split_once(',') else {
                continue;
            };
            let Ok(given) = STANDARD.decode(b64) else {
                continue;
            };
            let ok = match (version, secret.starts_with("whpk_")) {
                ("v1", false) => same(&mac(Algorithm::Sha256, &key, &signed), &given),
                ("v1a", true) => {
                    if content.is_empty() {
                        content = signed.concat();
                    }
                    ed25519(&key, &content, &given)
                }
                _ => false,
            };
            if ok {
                return Ok(Signed {
                    id: Some(id.to_owned()),
                    event_type: None,
                    signed_at: Some(ts),
                });
            }
        }
    }
    Err(no_match())
}

fn ed25519(public: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let (Ok(key), Ok(sig)) = (
        <[u8; 32]>::try_from(public),
        <[u8; 64]>::try_from(signature),
    ) else {
        return false;
    };
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&key) else {
        return false;
    };
    key.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&sig))
        .is_ok()
}

/// GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.
fn github(config: &Config, r: &Request) -> Result<Signed, Refusal> {
    let header = r.required("x-hub-signature-256")?;
    let given = header
        .strip_prefix("sha256=")
        .and_then(hex_decode)
        .ok_or_else(|| {
            Refusal::bad_request("bad-signature", "X-Hub-Signature-256 is not sha256=<hex>")
        })?;
    if !config
        .secrets
        .iter()
        .any(|s| same(&mac(Algorithm::Sha256, s.as_bytes(), &[r.body]), &given))
    {
        return Err(no_match());
    }
    Ok(Signed {
        id: r.header("x-github-delivery")?.map(str::to_owned),
        event_type: r.header("x-github-event")?.map(str::to_owned),
        signed_at: None,
    })
}

/// Stripe: `Stripe-Signature: t=<unix>,v1=<hex>,…` over `<t>.<body>` with the endpoint secret
/// as the key; the event's id and type are in the body.
fn stripe(config: &Config, r: &Request, now: i64) -> Result<Signed, Refusal> {
    let header = r.required("stripe-signature")?;
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',').take(32) {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = Some(v),
            Some(("v1", v)) => v1.extend(hex_decode(v)),
            _ => {}
        }
    }
    let t_text =
        t.ok_or_else(|| Refusal::bad_request("bad-signature", "Stripe-Signature has no t="))?;
    let ts = timestamp(t_text, "Stripe-Signature t=")?;
    fresh(config, ts, now)?;
    let matched = config.secrets.iter().any(|s| {
        let expected = mac(
            Algorithm::Sha256,
            s.as_bytes(),
            &[t_text.as_bytes(), b".", r.body],
        );
        v1.iter().any(|given| same(&expected, given))
    });
    if !matched {
        return Err(no_match());
    }
    let body: serde_json::Value = serde_json::from_slice(r.body).unwrap_or_default();
    let field = |k: &str| body.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    Ok(Signed {
        id: field("id"),
        event_type: field("type"),
        signed_at: Some(ts),
    })
}

/// The signed content of a template: literal text, `{body}`, `{header:Name}`.
fn content(template: &str, r: &Request) -> Result<Vec<u8>, Refusal> {
    let mut out = Vec::with_capacity(r.body.len() + template.len());
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.extend_from_slice(&rest.as_bytes()[..start]);
        let end = rest[start..]
            .find('}')
            .map(|e| start + e)
            .ok_or_else(|| Refusal::unauthorized("bad-config", "the template has an open `{`"))?;
        match &rest[start + 1..end] {
            "body" => out.extend_from_slice(r.body),
            h if h.starts_with("header:") => {
                out.extend_from_slice(r.required(&h["header:".len()..])?.as_bytes())
            }
            other => {
                return Err(Refusal::unauthorized(
                    "bad-config",
                    format!("unknown template part `{{{other}}}`"),
                ));
            }
        }
        rest = &rest[end + 1..];
    }
    out.extend_from_slice(rest.as_bytes());
    Ok(out)
}

fn hmac_generic(
    config: &Config,
    spec: &HmacSpec,
    r: &Request,
    now: i64,
) -> Result<Signed, Refusal> {
    let header = r.required(&spec.header)?;
    let encoded = header.strip_prefix(spec.prefix.as_str()).ok_or_else(|| {
        Refusal::bad_request(
            "bad-signature",
            format!("`{}` does not start with `{}`", spec.header, spec.prefix),
        )
    })?;
    let given = if spec.base64 {
        STANDARD.decode(encoded.trim()).ok()
    } else {
        hex_decode(encoded.trim())
    }
    .ok_or_else(|| Refusal::bad_request("bad-signature", "the signature does not decode"))?;
    let signed_at = match &spec.timestamp_header {
        Some(h) => {
            let ts = timestamp(r.required(h)?, h)?;
            fresh(config, ts, now)?;
            Some(ts)
        }
        None => None,
    };
    let signed = content(&spec.template, r)?;
    if !config
        .secrets
        .iter()
        .any(|s| same(&mac(spec.algorithm, s.as_bytes(), &[&signed]), &given))
    {
        return Err(no_match());
    }
    Ok(Signed {
        id: None,
        event_type: None,
        signed_at,
    })
}

fn basic(config: &Config, r: &Request) -> Result<Signed, Refusal> {
    let given = r
        .required("authorization")?
        .strip_prefix("Basic ")
        .and_then(|b| STANDARD.decode(b.trim()).ok())
        .ok_or_else(|| Refusal::unauthorized("bad-credentials", "expected Basic credentials"))?;
    if !config.secrets.iter().any(|s| same(s.as_bytes(), &given)) {
        return Err(Refusal::unauthorized(
            "bad-credentials",
            "the credentials match none of the source's",
        ));
    }
    Ok(Signed::default())
}

fn api_key(config: &Config, header: &str, r: &Request) -> Result<Signed, Refusal> {
    let given = match r.header(header)? {
        Some(v) => v,
        None => r
            .required("authorization")?
            .strip_prefix("Bearer ")
            .ok_or_else(|| Refusal::unauthorized("bad-credentials", "expected an API key"))?,
    };
    if !config
        .secrets
        .iter()
        .any(|s| same(s.as_bytes(), given.trim().as_bytes()))
    {
        return Err(Refusal::unauthorized(
            "bad-credentials",
            "the key matches none of the source's",
        ));
    }
    Ok(Signed::default())
}
