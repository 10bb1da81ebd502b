//! Records ↔ the WIT `event` guests see.
//!
//! The CloudEvents attributes travel in the record headers `ce_id`, `ce_type`, `ce_source`,
//! `ce_subject` (and `content-type` when not JSON); the WIT event lifts them into fields and
//! passes every other header as is, and the way back writes them into headers again, so what a
//! guest changes in a field is what readers see.

use std::ops::Range;

use bytes::Bytes;
use sluice_log::Record;
use sluice_runtime::{Event, Header, PackedEvent, Span};

const JSON: &str = "application/json";

pub fn to_event(record: &Record) -> Event {
    let text = |v: &Bytes| String::from_utf8_lossy(v).into_owned();
    let mut event = Event {
        id: String::new(),
        type_: String::new(),
        source: String::new(),
        time: record.timestamp,
        subject: None,
        key: record.key.as_ref().map(|k| k.to_vec()),
        headers: Vec::with_capacity(record.headers.len()),
        data: record.value_bytes().to_vec(),
        content_type: JSON.to_owned(),
    };
    for (name, value) in &record.headers {
        match name.as_str() {
            "ce_id" => event.id = text(value),
            "ce_type" => event.type_ = text(value),
            "ce_source" => event.source = text(value),
            "ce_subject" => event.subject = Some(text(value)),
            "content-type" => event.content_type = text(value),
            _ => event.headers.push(Header {
                name: name.clone(),
                value: value.to_vec(),
            }),
        }
    }
    event
}

pub fn to_record(event: Event) -> Record {
    let mut headers: Vec<(String, Bytes)> = Vec::with_capacity(event.headers.len() + 4);
    let mut attr = |name: &str, value: String| {
        if !value.is_empty() {
            headers.push((name.to_owned(), Bytes::from(value)));
        }
    };
    attr("ce_id", event.id);
    attr("ce_type", event.type_);
    attr("ce_source", event.source);
    if let Some(s) = event.subject {
        attr("ce_subject", s);
    }
    if event.content_type != JSON {
        attr("content-type", event.content_type);
    }
    headers.extend(
        event
            .headers
            .into_iter()
            .map(|h| (h.name, Bytes::from(h.value))),
    );
    Record {
        key: event.key.map(Bytes::from),
        value: Some(Bytes::from(event.data)),
        headers,
        timestamp: event.time,
    }
}

/// Records laid out for packed stages (`validate-packed`, `enrich-packed`, `route-packed`):
/// their values, types and ids back to back in one buffer, and where each one's parts are.
pub struct PackedBatch {
    pub buffer: Vec<u8>,
    pub events: Vec<PackedEvent>,
}

/// Lay out `records` for the packed stages, each with where its envelope's `payload` is in its
/// value (if the host knows); `None` if they do not fit 32-bit offsets.
pub fn pack<'a>(
    records: impl ExactSizeIterator<Item = (&'a Record, Option<Range<usize>>)>,
) -> Option<PackedBatch> {
    let mut batch = PackedBatch {
        buffer: Vec::new(),
        events: Vec::with_capacity(records.len()),
    };
    let put = |buffer: &mut Vec<u8>, bytes: &[u8]| -> Option<Span> {
        let offset = u32::try_from(buffer.len()).ok()?;
        let len = u32::try_from(bytes.len()).ok()?;
        offset.checked_add(len)?;
        buffer.extend_from_slice(bytes);
        Some(Span { offset, len })
    };
    for (record, payload) in records {
        let data = put(&mut batch.buffer, record.value_bytes())?;
        let payload = match payload {
            Some(p) if p.start <= p.end && p.end <= record.value_bytes().len() => Some(Span {
                offset: data.offset.checked_add(u32::try_from(p.start).ok()?)?,
                len: u32::try_from(p.len()).ok()?,
            }),
            _ => None,
        };
        let ty = record.header("ce_type").map_or(&[][..], |t| &t[..]);
        let type_ = put(&mut batch.buffer, ty)?;
        let id = record.header("ce_id").map_or(&[][..], |t| &t[..]);
        let id = put(&mut batch.buffer, id)?;
        // As `to_event` sees it: JSON unless a `content-type` header says otherwise.
        let json = record
            .header("content-type")
            .is_none_or(|t| &t[..] == JSON.as_bytes());
        batch.events.push(PackedEvent {
            data,
            type_,
            id,
            json,
            payload,
        });
    }
    Some(batch)
}

/// The event's id as a guest left it (the `ce_id` header).
pub fn id_of(record: &Record) -> String {
    record
        .header("ce_id")
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_lays_out_values_and_types() {
        let json = Record {
            key: None,
            value: Some(Bytes::from_static(br#"{"a":1}"#)),
            headers: vec![
                ("ce_type".into(), Bytes::from_static(b"order.created")),
                ("ce_id".into(), Bytes::from_static(b"e-1")),
            ],
            timestamp: 1,
        };
        let raw = Record {
            key: None,
            value: Some(Bytes::from_static(b"\x00\x01")),
            headers: vec![("content-type".into(), Bytes::from_static(b"text/plain"))],
            timestamp: 2,
        };
        let batch = pack([(&json, Some(1..4)), (&raw, None)].into_iter()).expect("fits");
        let part = |s: Span| &batch.buffer[s.offset as usize..(s.offset + s.len) as usize];
        assert_eq!(batch.events.len(), 2);
        assert_eq!(part(batch.events[0].data), br#"{"a":1}"#);
        assert_eq!(part(batch.events[0].type_), b"order.created");
        assert_eq!(part(batch.events[0].id), b"e-1");
        assert!(batch.events[0].json);
        let payload = batch.events[0].payload.expect("given");
        assert_eq!(part(payload), br#""a""#);
        assert_eq!(part(batch.events[1].data), b"\x00\x01");
        assert_eq!(part(batch.events[1].type_), b"");
        assert!(
            !batch.events[1].json,
            "as to_event: the content-type header decides"
        );
        assert_eq!(to_event(&raw).content_type, "text/plain");
    }

    #[test]
    fn round_trip_keeps_everything() {
        let record = Record {
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(br#"{"a":1}"#)),
            headers: vec![
                ("ce_id".into(), Bytes::from_static(b"e1")),
                ("ce_type".into(), Bytes::from_static(b"order.created")),
                ("ce_source".into(), Bytes::from_static(b"shop")),
                ("ce_subject".into(), Bytes::from_static(b"o-1")),
                ("sluice_key_id".into(), Bytes::from_static(b"abc")),
                ("x".into(), Bytes::from_static(b"1")),
            ],
            timestamp: 42,
        };
        let e = to_event(&record);
        assert_eq!(e.id, "e1");
        assert_eq!(e.type_, "order.created");
        assert_eq!(e.subject.as_deref(), Some("o-1"));
        assert_eq!(e.headers.len(), 2);
        assert_eq!(to_record(e), record);
    }
}
