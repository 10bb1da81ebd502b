//! The record-batch byte format: what a data object holds.
//!
//! A batch is a fixed 48-byte header followed by a payload. The payload is the concatenation of
//! the batch's records, optionally zstd-compressed as a whole. Every header byte but the
//! checksum itself is covered by `header_crc`; the stored payload by `payload_crc` (CRC-32C both),
//! so a torn or corrupted batch is detected on read, never returned.
//!
//! ```text
//!  0 magic u8 = 0x53   1 version u8 = 2   2 compression u8   3 sealed u8 (0 or 1)
//!  4 header_crc u32    8 base_offset u64 16 record_count u32 20 base_timestamp i64
//! 28 max_timestamp i64 36 payload_len u32 40 payload_crc u32 44 uncompressed_len u32
//! 48 payload
//! ```
//!
//! A record inside a version-2 payload:
//! `varint(offset - base_offset) zigzag-varint(timestamp - base_timestamp)
//!  varint(key_len + 1, 0 = null) key varint(value_len + 1, 0 = null) value
//!  varint(header_count) (varint(name_len) name varint(len) value)*`
//!
//! Offsets increase within a batch. An appended batch is dense (deltas 0, 1, 2, ...); a
//! compacted one has gaps where records were removed. A null value (a tombstone) and an empty
//! one are different things, as in Kafka.
//!
//! Version 1 (still read, no longer written) had no offset delta (offsets were base_offset +
//! position) and `varint(value_len)` (no null values).
//!
//! A sealed batch (a PHI topic's, see [`crate::sealing`]) stores its compressed payload
//! encrypted; the header's other fields are the plaintext's.
//!
//! Producers encode records in parallel ([`EncodedRecords`]); the single writer only stamps the
//! header with the base offset ([`EncodedRecords::to_batch`]), so the hot, serial part is small.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::record::Record;
use crate::sealing::DataKey;
use crate::topic::Compression;

pub const MAGIC: u8 = 0x53;
/// The version written; [`VERSION_DENSE`] is still read.
pub const VERSION: u8 = 2;
/// Version 1: implicit offsets, no null values.
pub const VERSION_DENSE: u8 = 1;
pub const HEADER_LEN: usize = 48;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("batch truncated: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
    #[error("bad magic byte {0:#x}")]
    BadMagic(u8),
    #[error("unsupported batch version {0}")]
    BadVersion(u8),
    #[error("header checksum mismatch")]
    HeaderChecksum,
    #[error("payload checksum mismatch")]
    PayloadChecksum,
    #[error("unknown compression code {0}")]
    UnknownCompression(u8),
    #[error("corrupt payload: {0}")]
    Corrupt(&'static str),
    #[error(transparent)]
    Sealed(#[from] crate::sealing::SealError),
}

/// Finds the key that opens a sealed batch, by the id the batch names.
pub type Opener<'a> = &'a dyn Fn(u32) -> Result<std::sync::Arc<DataKey>, String>;

/// For batches that are never sealed (internal topics, tests): any sealed one is an error.
pub fn no_keys(id: u32) -> Result<std::sync::Arc<DataKey>, String> {
    Err(format!(
        "batch sealed with data key {id}, and no keyring to open it"
    ))
}

/// The fixed header of a batch, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub version: u8,
    /// The payload is encrypted.
    pub sealed: bool,
    pub compression: Compression,
    pub base_offset: u64,
    pub record_count: u32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub payload_len: u32,
    pub payload_crc: u32,
    pub uncompressed_len: u32,
}

impl BatchHeader {
    /// The last offset of a dense batch (every appended batch is; a compacted one may end
    /// later: its index entry says where).
    pub fn last_offset(&self) -> u64 {
        self.base_offset + u64::from(self.record_count) - 1
    }

    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.payload_len as usize
    }

    fn write(&self, out: &mut BytesMut) {
        let start = out.len();
        out.put_u8(MAGIC);
        out.put_u8(self.version);
        out.put_u8(self.compression.code());
        out.put_u8(u8::from(self.sealed));
        out.put_u32_le(0); // header crc, patched below
        out.put_u64_le(self.base_offset);
        out.put_u32_le(self.record_count);
        out.put_i64_le(self.base_timestamp);
        out.put_i64_le(self.max_timestamp);
        out.put_u32_le(self.payload_len);
        out.put_u32_le(self.payload_crc);
        out.put_u32_le(self.uncompressed_len);
        let crc = header_crc(&out[start..start + HEADER_LEN]);
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    /// Decode and check a header at the start of `buf`.
    pub fn read(buf: &[u8]) -> Result<BatchHeader, FormatError> {
        if buf.len() < HEADER_LEN {
            return Err(FormatError::Truncated {
                need: HEADER_LEN,
                have: buf.len(),
            });
        }
        if buf[0] != MAGIC {
            return Err(FormatError::BadMagic(buf[0]));
        }
        if buf[1] != VERSION && buf[1] != VERSION_DENSE {
            return Err(FormatError::BadVersion(buf[1]));
        }
        let stored_crc = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
        if header_crc(&buf[..HEADER_LEN]) != stored_crc {
            return Err(FormatError::HeaderChecksum);
        }
        let compression =
            Compression::from_code(buf[2]).ok_or(FormatError::UnknownCompression(buf[2]))?;
        let mut b = &buf[8..HEADER_LEN];
        if buf[3] > 1 {
            return Err(FormatError::Corrupt("unknown sealing flag"));
        }
        Ok(BatchHeader {
            version: buf[1],
            sealed: buf[3] == 1,
            compression,
            base_offset: b.get_u64_le(),
            record_count: b.get_u32_le(),
            base_timestamp: b.get_i64_le(),
            max_timestamp: b.get_i64_le(),
            payload_len: b.get_u32_le(),
            payload_crc: b.get_u32_le(),
            uncompressed_len: b.get_u32_le(),
        })
    }
}

/// CRC-32C of every header byte but the checksum itself.
fn header_crc(header: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&header[..4]), &header[8..HEADER_LEN])
}

/// Records encoded (and compressed) by a producer, waiting for the writer to give them offsets.
#[derive(Debug, Clone)]
pub struct EncodedRecords {
    pub compression: Compression,
    pub record_count: u32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    /// The stored payload (compressed when `compression` is not `None`).
    pub payload: Bytes,
    pub payload_crc: u32,
    pub uncompressed_len: u32,
}

impl EncodedRecords {
    /// Encode `records` (at least one) into a payload, at consecutive offsets.
    pub fn encode(records: &[Record], compression: Compression) -> EncodedRecords {
        Self::encode_sparse(
            records.iter().enumerate().map(|(i, r)| (i as u64, r)),
            compression,
        )
    }

    /// Encode records (at least one) at increasing offset deltas from the batch's base offset
    /// (what compaction writes: the offsets it keeps).
    pub fn encode_sparse<'a>(
        records: impl ExactSizeIterator<Item = (u64, &'a Record)> + Clone,
        compression: Compression,
    ) -> EncodedRecords {
        assert!(records.len() > 0, "a batch holds at least one record");
        let base_timestamp = records.clone().map(|(_, r)| r.timestamp).min().unwrap_or(0);
        let max_timestamp = records.clone().map(|(_, r)| r.timestamp).max().unwrap_or(0);
        let record_count = records.len() as u32;
        let mut raw = BytesMut::with_capacity(records.clone().map(|(_, r)| r.size() + 2).sum());
        let mut previous = None;
        for (delta, r) in records {
            debug_assert!(previous < Some(delta), "offsets increase within a batch");
            previous = Some(delta);
            put_varint(&mut raw, delta);
            put_varint(&mut raw, zigzag(r.timestamp - base_timestamp));
            put_nullable(&mut raw, r.key.as_deref());
            put_nullable(&mut raw, r.value.as_deref());
            put_varint(&mut raw, r.headers.len() as u64);
            for (name, value) in &r.headers {
                put_varint(&mut raw, name.len() as u64);
                raw.put_slice(name.as_bytes());
                put_varint(&mut raw, value.len() as u64);
                raw.put_slice(value);
            }
        }
        let uncompressed_len = raw.len() as u32;
        let payload = compress(compression, raw);
        EncodedRecords {
            compression,
            record_count,
            base_timestamp,
            max_timestamp,
            payload_crc: crc32c::crc32c(&payload),
            payload,
            uncompressed_len,
        }
    }

    /// The records back, for the rare path that must drop some (duplicates) and re-encode.
    pub fn records(&self) -> Result<Vec<Record>, FormatError> {
        let header = BatchHeader {
            version: VERSION,
            sealed: false,
            compression: self.compression,
            base_offset: 0,
            record_count: self.record_count,
            base_timestamp: self.base_timestamp,
            max_timestamp: self.max_timestamp,
            payload_len: self.payload.len() as u32,
            payload_crc: self.payload_crc,
            uncompressed_len: self.uncompressed_len,
        };
        let mut out = Vec::with_capacity(self.record_count as usize);
        decode_payload(&header, &self.payload, &no_keys, &mut out)?;
        Ok(out.into_iter().map(|(_, r)| r).collect())
    }

    /// Append the complete batch (header stamped with `base_offset`, then payload) to `out`;
    /// with `seal`, the payload encrypted under that key (the base offset as associated data).
    pub fn to_batch(
        &self,
        base_offset: u64,
        out: &mut BytesMut,
        seal: Option<&DataKey>,
    ) -> BatchHeader {
        let sealed = seal.map(|k| k.seal(&base_offset.to_le_bytes(), &self.payload));
        let stored = sealed.as_ref().unwrap_or(&self.payload);
        let header = BatchHeader {
            version: VERSION,
            sealed: sealed.is_some(),
            compression: self.compression,
            base_offset,
            record_count: self.record_count,
            base_timestamp: self.base_timestamp,
            max_timestamp: self.max_timestamp,
            payload_len: stored.len() as u32,
            payload_crc: if sealed.is_some() {
                crc32c::crc32c(stored)
            } else {
                self.payload_crc
            },
            uncompressed_len: self.uncompressed_len,
        };
        header.write(out);
        out.put_slice(stored);
        header
    }
}

/// Decode every batch in `buf` (a byte range of a data object holding whole batches), checking
/// both checksums. Records are returned with their offsets.
/// Keys and values of the records share `buf`'s memory (no copy) when it is not compressed.
pub fn decode_batches(buf: &Bytes, open: Opener<'_>) -> Result<Vec<(u64, Record)>, FormatError> {
    let mut out = Vec::new();
    let mut buf = buf.clone();
    while !buf.is_empty() {
        let header = BatchHeader::read(&buf)?;
        let total = header.encoded_len();
        if buf.len() < total {
            return Err(FormatError::Truncated {
                need: total,
                have: buf.len(),
            });
        }
        decode_payload(&header, &buf.slice(HEADER_LEN..total), open, &mut out)?;
        buf = buf.slice(total..);
    }
    Ok(out)
}

fn decode_payload(
    header: &BatchHeader,
    stored: &Bytes,
    open: Opener<'_>,
    out: &mut Vec<(u64, Record)>,
) -> Result<(), FormatError> {
    if crc32c::crc32c(stored) != header.payload_crc {
        return Err(FormatError::PayloadChecksum);
    }
    let opened;
    let stored = if header.sealed {
        let id = crate::sealing::key_id(stored)?;
        let key = open(id).map_err(crate::sealing::SealError::NoKey)?;
        opened = Bytes::from(key.open(&header.base_offset.to_le_bytes(), stored)?);
        &opened
    } else {
        stored
    };
    let raw = decompress(header.compression, stored, header.uncompressed_len as usize)?;
    let mut cur = raw.clone();
    let dense = header.version == VERSION_DENSE;
    let mut next_delta = 0u64;
    for i in 0..header.record_count {
        let delta = if dense {
            u64::from(i)
        } else {
            let delta = get_varint(&mut cur)?;
            if delta < next_delta {
                return Err(FormatError::Corrupt("offsets do not increase"));
            }
            delta
        };
        next_delta = delta + 1;
        let ts = header.base_timestamp + unzigzag(get_varint(&mut cur)?);
        let key = get_nullable(&mut cur)?;
        let value = if dense {
            let vlen = get_varint(&mut cur)? as usize;
            Some(take(&mut cur, vlen)?)
        } else {
            get_nullable(&mut cur)?
        };
        let hcount = get_varint(&mut cur)? as usize;
        let mut headers = Vec::with_capacity(hcount.min(64));
        for _ in 0..hcount {
            let nlen = get_varint(&mut cur)? as usize;
            let name = take(&mut cur, nlen)?;
            let name = String::from_utf8(name.to_vec())
                .map_err(|_| FormatError::Corrupt("header name is not UTF-8"))?;
            let vlen = get_varint(&mut cur)? as usize;
            headers.push((name, take(&mut cur, vlen)?));
        }
        out.push((
            header.base_offset + delta,
            Record {
                key,
                value,
                headers,
                timestamp: ts,
            },
        ));
    }
    if cur.has_remaining() {
        return Err(FormatError::Corrupt("trailing bytes after the last record"));
    }
    Ok(())
}

/// Compress a whole payload. All codecs work on memory buffers and cannot fail.
fn compress(codec: Compression, raw: BytesMut) -> Bytes {
    use std::io::Write;
    match codec {
        Compression::None => raw.freeze(),
        Compression::Zstd => {
            Bytes::from(zstd::bulk::compress(&raw, 3).expect("zstd compression of a memory buffer"))
        }
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(&raw).expect("gzip into memory");
            Bytes::from(enc.finish().expect("gzip into memory"))
        }
        Compression::Snappy => Bytes::from(
            snap::raw::Encoder::new()
                .compress_vec(&raw)
                .expect("snappy compression of a memory buffer"),
        ),
        Compression::Lz4 => Bytes::from(lz4_flex::block::compress(&raw)),
    }
}

fn decompress(codec: Compression, stored: &Bytes, len: usize) -> Result<Bytes, FormatError> {
    use std::io::Read;
    let out = match codec {
        Compression::None => return Ok(stored.clone()),
        Compression::Zstd => {
            zstd::bulk::decompress(stored, len).map_err(|_| FormatError::Corrupt("zstd payload"))?
        }
        Compression::Gzip => {
            let mut out = Vec::with_capacity(len);
            flate2::read::GzDecoder::new(&stored[..])
                .read_to_end(&mut out)
                .map_err(|_| FormatError::Corrupt("gzip payload"))?;
            out
        }
        Compression::Snappy => snap::raw::Decoder::new()
            .decompress_vec(stored)
            .map_err(|_| FormatError::Corrupt("snappy payload"))?,
        Compression::Lz4 => lz4_flex::block::decompress(stored, len)
            .map_err(|_| FormatError::Corrupt("lz4 payload"))?,
    };
    if out.len() != len {
        return Err(FormatError::Corrupt(
            "decompressed length differs from the header",
        ));
    }
    Ok(Bytes::from(out))
}

/// `varint(len + 1) bytes`, or `varint(0)` for none.
fn put_nullable(out: &mut BytesMut, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varint(out, 0),
        Some(b) => {
            put_varint(out, b.len() as u64 + 1);
            out.put_slice(b);
        }
    }
}

fn get_nullable(cur: &mut Bytes) -> Result<Option<Bytes>, FormatError> {
    match get_varint(cur)? {
        0 => Ok(None),
        n => Ok(Some(take(cur, (n - 1) as usize)?)),
    }
}

fn take(cur: &mut Bytes, n: usize) -> Result<Bytes, FormatError> {
    if cur.len() < n {
        return Err(FormatError::Corrupt("length runs past the payload"));
    }
    Ok(cur.split_to(n))
}

fn put_varint(out: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

fn get_varint(cur: &mut Bytes) -> Result<u64, FormatError> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        if !cur.has_remaining() {
            return Err(FormatError::Corrupt("varint runs past the payload"));
        }
        let b = cur.get_u8();
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err(FormatError::Corrupt("varint longer than 10 bytes"))
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_record() -> impl Strategy<Value = Record> {
        (
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
            proptest::collection::vec(
                (
                    "[a-z_]{0,12}",
                    proptest::collection::vec(any::<u8>(), 0..20),
                ),
                0..4,
            ),
            -1_000_000i64..4_000_000_000_000i64,
        )
            .prop_map(|(key, value, headers, timestamp)| Record {
                key: key.map(Bytes::from),
                value: value.map(Bytes::from),
                headers: headers
                    .into_iter()
                    .map(|(k, v)| (k, Bytes::from(v)))
                    .collect(),
                timestamp,
            })
    }

    fn arb_compression() -> impl Strategy<Value = Compression> {
        prop_oneof![
            Just(Compression::None),
            Just(Compression::Zstd),
            Just(Compression::Gzip),
            Just(Compression::Snappy),
            Just(Compression::Lz4),
        ]
    }

    proptest! {
        #[test]
        fn batches_round_trip(
            batches in proptest::collection::vec(proptest::collection::vec(arb_record(), 1..20), 1..5),
            compression in arb_compression(),
            base in 0u64..1_000_000_000,
        ) {
            let mut buf = BytesMut::new();
            let mut expected = Vec::new();
            let mut next = base;
            for records in &batches {
                let enc = EncodedRecords::encode(records, compression);
                let header = enc.to_batch(next, &mut buf, None);
                prop_assert_eq!(header.last_offset(), next + records.len() as u64 - 1);
                for r in records {
                    expected.push((next, r.clone()));
                    next += 1;
                }
            }
            prop_assert_eq!(decode_batches(&buf.freeze(), &no_keys).unwrap(), expected);
        }

        #[test]
        fn any_flipped_byte_is_detected(
            records in proptest::collection::vec(arb_record(), 1..10),
            compression in arb_compression(),
            pos in any::<proptest::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let mut buf = BytesMut::new();
            EncodedRecords::encode(&records, compression).to_batch(7, &mut buf, None);
            let i = pos.index(buf.len());
            buf[i] ^= flip;
            prop_assert!(decode_batches(&buf.freeze(), &no_keys).is_err(), "corruption at byte {} went unnoticed", i);
        }

        #[test]
        fn truncation_is_detected(
            records in proptest::collection::vec(arb_record(), 1..10),
            cut in any::<proptest::sample::Index>(),
        ) {
            let mut buf = BytesMut::new();
            EncodedRecords::encode(&records, Compression::None).to_batch(0, &mut buf, None);
            let keep = cut.index(buf.len());
            prop_assert!(decode_batches(&buf.freeze().slice(..keep), &no_keys).is_err() || keep == 0);
        }
    }

    #[test]
    fn null_and_empty_values_differ_and_sparse_offsets_survive() {
        let rec = |value: Option<&'static [u8]>| Record {
            key: Some(Bytes::from_static(b"k")),
            value: value.map(Bytes::from_static),
            headers: vec![],
            timestamp: 5,
        };
        let records = [rec(None), rec(Some(b"")), rec(Some(b"v"))];
        let at = [0u64, 3, 900];
        let mut buf = BytesMut::new();
        EncodedRecords::encode_sparse(at.iter().copied().zip(&records), Compression::Zstd)
            .to_batch(100, &mut buf, None);
        let back = decode_batches(&buf.freeze(), &no_keys).unwrap();
        let offsets: Vec<u64> = back.iter().map(|(o, _)| *o).collect();
        assert_eq!(offsets, [100, 103, 1000]);
        let values: Vec<Option<&[u8]>> = back.iter().map(|(_, r)| r.value.as_deref()).collect();
        assert_eq!(values, [None, Some(&b""[..]), Some(&b"v"[..])]);
    }

    #[test]
    fn a_sealed_batch_hides_its_records_and_needs_its_key() {
        let records = vec![Record {
            key: Some(Bytes::from_static(b"Patient/1")),
            value: Some(Bytes::from_static(b"{\"name\":\"Jane Chalmers\"}")),
            headers: vec![("h".into(), Bytes::from_static(b"secret header"))],
            timestamp: 5,
        }];
        let key = std::sync::Arc::new(DataKey::new(3, &[9; 32]));
        let mut buf = BytesMut::new();
        let h =
            EncodedRecords::encode(&records, Compression::None).to_batch(40, &mut buf, Some(&key));
        assert!(h.sealed);
        let buf = buf.freeze();
        for plain in [&b"Chalmers"[..], b"Patient/1", b"secret header"] {
            assert!(!buf.windows(plain.len()).any(|w| w == plain));
        }
        let k = key.clone();
        let open = move |id: u32| {
            assert_eq!(id, 3);
            Ok(k.clone())
        };
        let back = decode_batches(&buf, &open).unwrap();
        assert_eq!((back[0].0, &back[0].1), (40, &records[0]));
        let wrong = |_| Ok(std::sync::Arc::new(DataKey::new(3, &[8; 32])));
        assert!(matches!(
            decode_batches(&buf, &wrong),
            Err(FormatError::Sealed(crate::sealing::SealError::WrongKey(3)))
        ));
        assert!(matches!(
            decode_batches(&buf, &no_keys),
            Err(FormatError::Sealed(crate::sealing::SealError::NoKey(_)))
        ));
    }

    #[test]
    fn version_1_batches_are_still_read() {
        // A version-1 batch as the log wrote it before: implicit offsets, no null values.
        let payload: &[u8] = &[0, 2, b'k', 1, b'v', 0, 2, 0, 0, 0];
        let header = BatchHeader {
            version: VERSION_DENSE,
            sealed: false,
            compression: Compression::None,
            base_offset: 7,
            record_count: 2,
            base_timestamp: 10,
            max_timestamp: 11,
            payload_len: payload.len() as u32,
            payload_crc: crc32c::crc32c(payload),
            uncompressed_len: payload.len() as u32,
        };
        let mut buf = BytesMut::new();
        header.write(&mut buf);
        buf.put_slice(payload);
        let back = decode_batches(&buf.freeze(), &no_keys).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!((back[0].0, back[1].0), (7, 8));
        assert_eq!(back[0].1.value.as_deref(), Some(&b"v"[..]));
        assert_eq!(back[1].1.key, None);
        assert_eq!(back[1].1.value.as_deref(), Some(&b""[..]));
        assert_eq!(back[1].1.timestamp, 11);
    }

    #[test]
    fn header_layout_is_pinned() {
        let rec = Record {
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"v")),
            headers: vec![("h".into(), Bytes::from_static(b"x"))],
            timestamp: 1_700_000_000_000,
        };
        let mut buf = BytesMut::new();
        EncodedRecords::encode(&[rec], Compression::None).to_batch(42, &mut buf, None);
        assert_eq!(buf[0], MAGIC);
        assert_eq!(buf[1], VERSION);
        assert_eq!(u64::from_le_bytes(buf[8..16].try_into().unwrap()), 42);
        assert_eq!(u32::from_le_bytes(buf[16..20].try_into().unwrap()), 1);
        // payload: offset delta 0, ts delta 0, key len 1+1, 'k', value len 1+1, 'v', 1 header,
        // name len 1, 'h', 1, 'x'
        assert_eq!(
            &buf[HEADER_LEN..],
            &[0, 0, 2, b'k', 2, b'v', 1, 1, b'h', 1, b'x']
        );
    }

    #[test]
    fn every_codec_actually_compresses() {
        let recs: Vec<Record> = (0..100)
            .map(|i| Record {
                key: None,
                value: Some(Bytes::from(format!(
                    "{{\"n\":{i},\"text\":\"the same words again and again\"}}"
                ))),
                headers: vec![],
                timestamp: 0,
            })
            .collect();
        let plain = EncodedRecords::encode(&recs, Compression::None);
        for codec in [
            Compression::Zstd,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
        ] {
            let packed = EncodedRecords::encode(&recs, codec);
            assert!(packed.payload.len() * 3 < plain.payload.len(), "{codec:?}");
            assert_eq!(packed.records().unwrap(), recs, "{codec:?}");
        }
    }
}
