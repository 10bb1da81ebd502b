//! Encryption at rest of sensitive topics (AES-256-GCM, envelope keys).
//!
//! A topic whose `dataSensitivity` is `PHI` has its batches sealed when the writer lays them
//! out: the stored payload becomes `key id (u32 LE) ‖ nonce (12) ‖ ciphertext ‖ tag (16)`,
//! marked in the batch header, with the batch's base offset as associated data (a batch moved
//! to another offset fails to open). The keys come from a [`Keyring`] the owner of the log
//! gives it (per tenant data keys, wrapped by a key-encryption key); the log never stores one.
//! A sealed batch whose key is missing or wrong is an error, never plaintext or garbage.

use std::sync::Arc;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use bytes::{BufMut, Bytes, BytesMut};

use crate::commit::TopicMeta;

/// Bytes a sealed payload adds: key id, nonce, tag.
pub const SEAL_OVERHEAD: usize = 4 + 12 + 16;

/// One data key, ready to seal and open.
pub struct DataKey {
    pub id: u32,
    cipher: LessSafeKey,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DataKey({})", self.id)
    }
}

impl DataKey {
    pub fn new(id: u32, key: &[u8; 32]) -> DataKey {
        DataKey {
            id,
            cipher: LessSafeKey::new(
                UnboundKey::new(&AES_256_GCM, key).expect("32 bytes make an AES-256 key"),
            ),
        }
    }

    /// Seal `plaintext` (a batch payload) with `aad`. Nonces are random (96 bits): a key
    /// seals far fewer than 2^32 batches before it is rotated.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Bytes {
        let nonce: [u8; 12] = rand::random();
        let mut out = BytesMut::with_capacity(SEAL_OVERHEAD + plaintext.len());
        out.put_u32_le(self.id);
        out.put_slice(&nonce);
        out.put_slice(plaintext);
        let tag = self
            .cipher
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut out[16..],
            )
            .expect("AES-GCM seals any batch payload");
        out.put_slice(tag.as_ref());
        out.freeze()
    }

    /// Open what [`DataKey::seal`] made with the same `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < SEAL_OVERHEAD {
            return Err(SealError::Malformed);
        }
        let nonce: [u8; 12] = sealed[4..16].try_into().expect("12 bytes");
        let mut buf = sealed[16..].to_vec();
        let plain_len = self
            .cipher
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buf,
            )
            .map_err(|_| SealError::WrongKey(self.id))?
            .len();
        buf.truncate(plain_len);
        Ok(buf)
    }
}

/// The key id a sealed payload names.
pub fn key_id(sealed: &[u8]) -> Result<u32, SealError> {
    sealed
        .get(..4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
        .ok_or(SealError::Malformed)
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("a sealed batch is too short to hold its key id, nonce and tag")]
    Malformed,
    #[error("data key {0} does not open this batch (a wrong key, or the data was altered)")]
    WrongKey(u32),
    #[error("{0}")]
    NoKey(String),
}

/// Where a log's sealed topics get their keys.
pub trait Keyring: Send + Sync {
    /// The key new batches of `topic` are sealed with; `Err` when the topic must be sealed and
    /// there is no key (the append fails rather than store plaintext).
    fn sealing_key(&self, topic: &str) -> Result<Arc<DataKey>, String>;
    /// The key `id` that sealed batches of `topic`.
    fn opening_key(&self, topic: &str, id: u32) -> Result<Arc<DataKey>, String>;
}

/// Is this topic stored sealed? (`dataSensitivity: PHI`.)
pub fn sealed(meta: &TopicMeta) -> bool {
    meta.spec["dataSensitivity"] == "PHI"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_payload_opens_only_with_its_key_and_aad() {
        let k = DataKey::new(7, &[1; 32]);
        let sealed = k.seal(b"offset 5", b"patient jane");
        assert_eq!(key_id(&sealed).unwrap(), 7);
        assert!(!sealed.windows(4).any(|w| w == b"jane"));
        assert_eq!(k.open(b"offset 5", &sealed).unwrap(), b"patient jane");
        assert_eq!(
            k.open(b"offset 6", &sealed).unwrap_err(),
            SealError::WrongKey(7)
        );
        let other = DataKey::new(7, &[2; 32]);
        assert_eq!(
            other.open(b"offset 5", &sealed).unwrap_err(),
            SealError::WrongKey(7)
        );
        assert_eq!(
            k.open(b"", &sealed[..10]).unwrap_err(),
            SealError::Malformed
        );
    }
}
