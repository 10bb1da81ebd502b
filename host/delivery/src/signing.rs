//! Standard Webhooks signatures over `{webhook-id}.{webhook-timestamp}.{body}`:
//! `v1,<base64 HMAC-SHA256>` keyed by the base64 secret after `whsec_` (symmetric), or
//! `v1a,<base64 ed25519 signature>` with the signing key `whsk_<base64 32-byte seed>`, which
//! receivers verify with its public key `whpk_<base64 32 bytes>` (asymmetric).
//! While a secret is being rotated, every valid secret signs and the header lists each
//! signature, space-separated, so receivers holding either secret verify.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

pub const PREFIX: &str = "whsec_";
pub const SIGNING_KEY_PREFIX: &str = "whsk_";
pub const PUBLIC_KEY_PREFIX: &str = "whpk_";

/// A key that signs: an HMAC secret or an ed25519 signing key.
pub enum Key {
    Hmac(Vec<u8>),
    Ed25519(Box<ed25519_dalek::SigningKey>),
}

/// A new ed25519 signing key, `whsk_…`.
pub fn new_signing_key() -> String {
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    format!("{SIGNING_KEY_PREFIX}{}", STANDARD.encode(seed))
}

fn signing_key_of(secret: &str) -> Option<ed25519_dalek::SigningKey> {
    let seed: [u8; 32] = STANDARD
        .decode(secret.strip_prefix(SIGNING_KEY_PREFIX)?)
        .ok()?
        .try_into()
        .ok()?;
    Some(ed25519_dalek::SigningKey::from_bytes(&seed))
}

/// The public key (`whpk_…`) of a `whsk_…` signing key.
pub fn public_key_of(secret: &str) -> Option<String> {
    let key = signing_key_of(secret)?;
    Some(format!(
        "{PUBLIC_KEY_PREFIX}{}",
        STANDARD.encode(key.verifying_key().as_bytes())
    ))
}

/// Either kind of secret, as a key.
pub fn parse(secret: &str) -> Option<Key> {
    if secret.starts_with(SIGNING_KEY_PREFIX) {
        signing_key_of(secret).map(|k| Key::Ed25519(Box::new(k)))
    } else {
        key_of(secret).map(Key::Hmac)
    }
}

/// A new random secret (24 bytes, as Svix issues them).
pub fn new_secret() -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    format!("{PREFIX}{}", STANDARD.encode(bytes))
}

/// The key bytes of a `whsec_…` secret; `None` if it is not one.
pub fn key_of(secret: &str) -> Option<Vec<u8>> {
    let b64 = secret.strip_prefix(PREFIX)?;
    let key = STANDARD.decode(b64).ok()?;
    (key.len() >= 16 && key.len() <= 64).then_some(key)
}

/// `v1,<signature>` of one message with one key.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// `v1a,<signature>` of one message.
pub fn sign_ed25519(
    key: &ed25519_dalek::SigningKey,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    use ed25519_dalek::Signer;
    let mut content = Vec::with_capacity(id.len() + body.len() + 24);
    content.extend_from_slice(id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp.to_string().as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    format!("v1a,{}", STANDARD.encode(key.sign(&content).to_bytes()))
}

/// The `webhook-signature` header value: one signature per key.
pub fn header(keys: &[Key], id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter()
        .map(|k| match k {
            Key::Hmac(k) => sign(k, id, timestamp, body),
            Key::Ed25519(k) => sign_ed25519(k, id, timestamp, body),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ed25519_signatures_verify_with_the_public_key() {
        use ed25519_dalek::Verifier;
        let secret = new_signing_key();
        let public = public_key_of(&secret).unwrap();
        let Some(Key::Ed25519(k)) = parse(&secret) else {
            panic!("a signing key")
        };
        let sig = sign_ed25519(&k, "msg_1", 1614265330, b"{}");
        let raw = STANDARD.decode(sig.strip_prefix("v1a,").unwrap()).unwrap();
        let pk: [u8; 32] = STANDARD
            .decode(public.strip_prefix(PUBLIC_KEY_PREFIX).unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&pk).unwrap();
        let signature = ed25519_dalek::Signature::from_slice(&raw).unwrap();
        assert!(vk.verify(b"msg_1.1614265330.{}", &signature).is_ok());
        assert!(vk.verify(b"msg_1.1614265331.{}", &signature).is_err());
        assert!(parse("whsk_short").is_none());
    }

    /// The example of the Standard Webhooks specification and its reference libraries.
    #[test]
    fn the_specifications_example_verifies() {
        let key = key_of("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = sign(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn secrets_are_checked_and_rotation_signs_with_each() {
        assert!(key_of("nope").is_none());
        assert!(key_of("whsec_!!").is_none());
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        let keys = vec![parse(&a).unwrap(), parse(&b).unwrap()];
        let h = header(&keys, "m", 1, b"{}");
        assert_eq!(h.split(' ').count(), 2);
        assert!(h.split(' ').all(|s| s.starts_with("v1,")));
    }
}
