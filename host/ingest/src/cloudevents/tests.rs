use serde_json::json;

use super::*;
use crate::envelope::Limits;

fn rules() -> TopicRules<'static> {
    TopicRules {
        key_field: None,
        log_append_time: false,
        max_message_bytes: 1 << 20,
        limits: Limits::DEFAULT,
    }
}

fn header<'a>(e: &'a Event, name: &str) -> Option<&'a str> {
    e.record
        .headers
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
}

fn h(list: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}

#[test]
fn modes_come_from_the_content_type_and_the_specversion_header() {
    assert_eq!(
        mode(Some("application/cloudevents+json; charset=utf-8"), false),
        Some(Mode::Structured)
    );
    assert_eq!(
        mode(Some("application/cloudevents-batch+json"), true),
        Some(Mode::Batch)
    );
    assert_eq!(mode(Some("application/json"), true), Some(Mode::Binary));
    assert_eq!(mode(Some("application/json"), false), None);
}

#[test]
fn structured_json_data_becomes_the_envelope_payload() {
    let e = structured(
        json!({"specversion": "1.0", "id": "A234-1234", "source": "/mycontext", "type": "com.example.someevent",
               "subject": "larger-context", "time": "2018-04-05T17:31:00Z", "datacontenttype": "application/json",
               "dataschema": "https://example.com/s.json", "comexampleextension1": "value", "comexampleothervalue": 5,
               "data": {"n": 1}}),
        &rules(), "k1", 0).unwrap();
    assert_eq!(e.event_id, "A234-1234");
    let v: Value = serde_json::from_slice(e.record.value_bytes()).unwrap();
    assert_eq!(v["payload"], json!({"n": 1}));
    assert_eq!(v["event_type"], "com.example.someevent");
    assert_eq!(e.record.timestamp, 1_522_949_460_000);
    assert_eq!(header(&e, "ce_source"), Some("/mycontext"));
    assert_eq!(header(&e, "ce_subject"), Some("larger-context"));
    assert_eq!(header(&e, "ce_comexampleextension1"), Some("value"));
    assert_eq!(header(&e, "ce_comexampleothervalue"), Some("5"));
    assert_eq!(
        header(&e, "ce_dataschema"),
        Some("https://example.com/s.json")
    );
}

#[test]
fn binary_data_is_stored_as_it_is() {
    let e = structured(
        json!({"specversion": "1.0", "id": "b1", "source": "s", "type": "t",
               "datacontenttype": "image/png", "data_base64": "iVBORw0KGgo="}),
        &rules(),
        "k1",
        7,
    )
    .unwrap();
    assert_eq!(e.record.value_bytes(), b"\x89PNG\r\n\x1a\n");
    assert_eq!(header(&e, "content-type"), Some("image/png"));
    assert_eq!(header(&e, "ce_type"), Some("t"));
    let e = binary(
        &h(&[
            ("ce-specversion", "1.0"),
            ("ce-id", "x%20y"),
            ("ce-source", "%2Fa%2Fb"),
            ("ce-type", "t"),
            ("ce-traceparent", "00-abc"),
            ("other", "ignored"),
        ]),
        Some("text/plain"),
        Bytes::from_static(b"hello"),
        &rules(),
        "k1",
        7,
    )
    .unwrap();
    assert_eq!(e.event_id, "x y", "percent-decoded");
    assert_eq!(header(&e, "ce_source"), Some("/a/b"));
    assert_eq!(header(&e, "ce_traceparent"), Some("00-abc"));
    assert_eq!(e.record.value_bytes(), b"hello");
    let e = binary(
        &h(&[
            ("CE-SpecVersion", "1.0"),
            ("ce-id", "j"),
            ("ce-source", "s"),
            ("ce-type", "t"),
        ]),
        Some("application/json"),
        Bytes::from_static(br#"{"a": 1}"#),
        &rules(),
        "k1",
        7,
    )
    .unwrap();
    let v: Value = serde_json::from_slice(e.record.value_bytes()).unwrap();
    assert_eq!(v["payload"], json!({"a": 1}));
}

#[test]
fn bad_events_are_refused_with_the_reason() {
    let r = rules();
    let refuse = |v: Value| structured(v, &r, "k", 0).unwrap_err().message;
    assert!(refuse(json!({"specversion": "1.0", "id": "1", "type": "t"})).contains("source"));
    assert!(refuse(json!({"id": "1", "source": "s", "type": "t"})).contains("specversion"));
    assert!(
        refuse(json!({"specversion": "0.3", "id": "1", "source": "s", "type": "t"}))
            .contains("1.0")
    );
    assert!(
        refuse(json!({"specversion": "1.0", "id": "", "source": "s", "type": "t"}))
            .contains("empty")
    );
    assert!(
        refuse(
            json!({"specversion": "1.0", "id": "1", "source": "s", "type": "t", "Bad-Name": "x"})
        )
        .contains("attribute name")
    );
    assert!(
        refuse(
            json!({"specversion": "1.0", "id": "1", "source": "s", "type": "t", "time": "noon"})
        )
        .contains("RFC 3339")
    );
    assert!(refuse(json!({"specversion": "1.0", "id": "1", "source": "s", "type": "t", "data": 1, "data_base64": "AA=="})).contains("not both"));
    assert!(
        refuse(
            json!({"specversion": "1.0", "id": "1", "source": "s", "type": "t", "x": {"nested": 1}})
        )
        .contains("string")
    );
    let e = binary(
        &h(&[
            ("ce-specversion", "1.0"),
            ("ce-id", "%zz"),
            ("ce-source", "s"),
            ("ce-type", "t"),
        ]),
        None,
        Bytes::new(),
        &r,
        "k",
        0,
    )
    .unwrap_err();
    assert!(e.message.contains("hex"), "{}", e.message);
    let e = binary(
        &h(&[
            ("ce-specversion", "1.0"),
            ("ce-id", "1"),
            ("ce-id", "2"),
            ("ce-source", "s"),
            ("ce-type", "t"),
        ]),
        None,
        Bytes::new(),
        &r,
        "k",
        0,
    )
    .unwrap_err();
    assert!(e.message.contains("more than once"), "{}", e.message);
    let e = binary(
        &h(&[
            ("ce-specversion", "1.0"),
            ("ce-id", "1"),
            ("ce-source", "s"),
            ("ce-type", "t"),
        ]),
        Some("application/json"),
        Bytes::from_static(b"{nope"),
        &r,
        "k",
        0,
    )
    .unwrap_err();
    assert!(e.message.contains("JSON"), "{}", e.message);
    // Batches answer per event.
    let body = json!([{"specversion": "1.0", "id": "1", "source": "s", "type": "t"}, {"id": "2"}])
        .to_string();
    let out = batch_body(body.as_bytes(), 10, &r, "k", 0).unwrap();
    assert!(out[0].is_ok() && out[1].is_err());
    assert!(batch_body(b"{}", 10, &r, "k", 0).is_err());
    assert_eq!(
        batch_body(json!([1, 2, 3]).to_string().as_bytes(), 2, &r, "k", 0)
            .unwrap_err()
            .error_code,
        41302
    );
}

#[test]
fn records_render_back_as_the_cloudevents_they_came_in_as() {
    let r = rules();
    let stored = |e: Event| sluice_log::StoredRecord {
        partition: 2,
        offset: 9,
        record: e.record,
    };
    let e = structured(
        json!({"specversion": "1.0", "id": "o-1", "source": "/shop", "type": "order.created",
               "subject": "order/1", "time": "2018-04-05T17:31:00Z", "traceparent": "00-ab",
               "data": {"total": 12.5}}),
        &r,
        "k",
        0,
    )
    .unwrap();
    let s = stored(e);
    let ce = out::structured(&s, "orders", None);
    assert_eq!(ce["id"], "o-1");
    assert_eq!(ce["type"], "order.created");
    assert_eq!(ce["source"], "/shop");
    assert_eq!(ce["subject"], "order/1");
    assert_eq!(ce["time"], "2018-04-05T17:31:00.000Z");
    assert_eq!(ce["traceparent"], "00-ab");
    assert_eq!(ce["data"], json!({"total": 12.5}));
    assert_eq!(
        (
            ce["sluicetopic"].clone(),
            ce["sluicepartition"].clone(),
            ce["sluiceoffset"].clone()
        ),
        (json!("orders"), json!(2), json!(9))
    );
    // Parsing the rendering again gives the same event.
    let mut again = ce.clone();
    for k in ["sluicetopic", "sluicepartition", "sluiceoffset"] {
        again.as_object_mut().unwrap().remove(k);
    }
    let back = structured(again, &r, "k", 0).unwrap();
    assert_eq!(back.event_id, "o-1");
    let (headers, body, content_type) = out::binary(&s, "orders", None);
    assert!(headers.contains(&("ce-id".into(), "o-1".into())));
    assert_eq!(content_type, "application/json");
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({"total": 12.5})
    );
    // Binary data keeps its bytes and type.
    let e = structured(
        json!({"specversion": "1.0", "id": "b", "source": "s", "type": "t",
        "datacontenttype": "text/plain", "data": "hi there"}),
        &r,
        "k",
        0,
    )
    .unwrap();
    let s = stored(e);
    let ce = out::structured(&s, "t", None);
    assert_eq!(
        (ce["datacontenttype"].clone(), ce["data_base64"].clone()),
        (json!("text/plain"), json!("aGkgdGhlcmU="))
    );
    assert_eq!(out::percent_encode("a b\"c%é"), "a%20b%22c%25%C3%A9");
}
