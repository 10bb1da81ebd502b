//! Each scheme against its sender's documented examples, and every way a request is refused.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};

use super::*;

fn config(json: serde_json::Value) -> Config {
    Config::parse(&json.to_string()).unwrap()
}

fn headers(list: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}

fn hmac256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// The Standard Webhooks / Svix documentation's example.
const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SW_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const SW_TS: i64 = 1_614_265_330;
const SW_BODY: &str = r#"{"test": 2432232314}"#;
const SW_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

fn sw(sig: &str, ts: i64) -> Vec<(String, Vec<u8>)> {
    headers(&[
        ("webhook-id", SW_ID),
        ("webhook-timestamp", &ts.to_string()),
        ("webhook-signature", sig),
    ])
}

#[test]
fn standard_webhooks_documented_example() {
    let c = config(serde_json::json!({"scheme": "standard-webhooks", "secret": SW_SECRET}));
    let h = sw(SW_SIG, SW_TS);
    let r = Request {
        headers: &h,
        body: SW_BODY.as_bytes(),
    };
    let a = accept(&c, &r, SW_TS + 10).unwrap();
    assert_eq!(a.id.as_deref(), Some(SW_ID));
    assert_eq!(a.payload, serde_json::json!({"test": 2432232314u64}));
    assert_eq!(a.event_type, "webhook", "no `type` in the body");
    // Several signatures: any one matching is enough; svix- names work the same.
    let h = sw(&format!("v1,Zm9v {SW_SIG}"), SW_TS);
    assert!(
        accept(
            &c,
            &Request {
                headers: &h,
                body: SW_BODY.as_bytes()
            },
            SW_TS
        )
        .is_ok()
    );
    let svix = headers(&[
        ("svix-id", SW_ID),
        ("svix-timestamp", &SW_TS.to_string()),
        ("svix-signature", SW_SIG),
    ]);
    assert!(
        accept(
            &c,
            &Request {
                headers: &svix,
                body: SW_BODY.as_bytes()
            },
            SW_TS
        )
        .is_ok()
    );
    // A rotated-in second secret: either verifies.
    let both = config(serde_json::json!({"scheme": "standard-webhooks",
        "secrets": ["whsec_dGVzdA==", SW_SECRET]}));
    assert!(
        accept(
            &both,
            &Request {
                headers: &h,
                body: SW_BODY.as_bytes()
            },
            SW_TS
        )
        .is_ok()
    );
}

#[test]
fn standard_webhooks_refusals() {
    let c = config(
        serde_json::json!({"scheme": "standard-webhooks", "secret": SW_SECRET,
        "tolerance": "5m"}),
    );
    let refuse = |h: &[(String, Vec<u8>)], body: &str, now: i64| {
        accept(
            &c,
            &Request {
                headers: h,
                body: body.as_bytes(),
            },
            now,
        )
        .unwrap_err()
    };
    // Tampered body.
    assert_eq!(
        refuse(&sw(SW_SIG, SW_TS), r#"{"test": 1}"#, SW_TS).code,
        "bad-signature"
    );
    // Expired, and from the future.
    assert_eq!(
        refuse(&sw(SW_SIG, SW_TS), SW_BODY, SW_TS + 301).code,
        "stale-timestamp"
    );
    assert_eq!(
        refuse(&sw(SW_SIG, SW_TS), SW_BODY, SW_TS - 301).code,
        "stale-timestamp"
    );
    // Wrong secret.
    let other =
        config(serde_json::json!({"scheme": "standard-webhooks", "secret": "whsec_dGVzdA=="}));
    let h = sw(SW_SIG, SW_TS);
    let e = accept(
        &other,
        &Request {
            headers: &h,
            body: SW_BODY.as_bytes(),
        },
        SW_TS,
    )
    .unwrap_err();
    assert_eq!((e.status, e.code), (401, "bad-signature"));
    // Missing and duplicated headers, a timestamp that is not one.
    let missing = headers(&[("webhook-id", SW_ID), ("webhook-timestamp", "1614265330")]);
    let e = refuse(&missing, SW_BODY, SW_TS);
    assert_eq!((e.status, e.code), (401, "missing-signature"));
    let mut dup = sw(SW_SIG, SW_TS);
    dup.push(("Webhook-Signature".into(), SW_SIG.as_bytes().to_vec()));
    assert_eq!(refuse(&dup, SW_BODY, SW_TS).status, 400);
    let bad_ts = headers(&[
        ("webhook-id", SW_ID),
        ("webhook-timestamp", "yesterday"),
        ("webhook-signature", SW_SIG),
    ]);
    assert_eq!(refuse(&bad_ts, SW_BODY, SW_TS).code, "bad-timestamp");
    // A v1 signature never passes for a public (v1a) key, nor the reverse.
    let sig = STANDARD.encode(hmac256(
        &STANDARD.decode(&SW_SECRET[6..]).unwrap(),
        format!("{SW_ID}.{SW_TS}.{SW_BODY}").as_bytes(),
    ));
    assert_eq!(
        format!("v1,{sig}"),
        SW_SIG,
        "the signed content is id.timestamp.body"
    );
}

#[test]
fn standard_webhooks_ed25519() {
    use ed25519_dalek::{Signer, SigningKey};
    let signing = SigningKey::from_bytes(&[7u8; 32]);
    let public = format!(
        "whpk_{}",
        STANDARD.encode(signing.verifying_key().to_bytes())
    );
    let c = config(serde_json::json!({"scheme": "standard-webhooks", "secret": public}));
    let body = r#"{"type": "user.created", "data": {"id": "u1"}}"#;
    let content = format!("{SW_ID}.{SW_TS}.{body}");
    let sig = format!(
        "v1a,{}",
        STANDARD.encode(signing.sign(content.as_bytes()).to_bytes())
    );
    let h = sw(&sig, SW_TS);
    let c2 = config(
        serde_json::json!({"scheme": "standard-webhooks", "secret": c.secrets[0],
        "event_type": "/type", "key": "/data/id"}),
    );
    let a = accept(
        &c2,
        &Request {
            headers: &h,
            body: body.as_bytes(),
        },
        SW_TS,
    )
    .unwrap();
    assert_eq!(
        (a.event_type.as_str(), a.key.as_deref()),
        ("user.created", Some("u1"))
    );
    let tampered = body.replace("u1", "u2");
    assert!(
        accept(
            &c,
            &Request {
                headers: &h,
                body: tampered.as_bytes()
            },
            SW_TS
        )
        .is_err()
    );
    // An HMAC (v1) signature is not accepted by an ed25519 key.
    let h = sw(SW_SIG, SW_TS);
    assert!(
        accept(
            &c,
            &Request {
                headers: &h,
                body: SW_BODY.as_bytes()
            },
            SW_TS
        )
        .is_err()
    );
}

#[test]
fn github_documented_example() {
    // GitHub's "Validating webhook deliveries" example.
    let c = config(serde_json::json!({"scheme": "github", "secret": "It's a Secret to Everybody"}));
    let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    let h = headers(&[
        ("X-Hub-Signature-256", sig),
        ("X-GitHub-Event", "push"),
        ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
    ]);
    let a = accept(
        &c,
        &Request {
            headers: &h,
            body: b"Hello, World!",
        },
        0,
    )
    .unwrap();
    assert_eq!(a.event_type, "push");
    assert_eq!(
        a.id.as_deref(),
        Some("72d3162e-cc78-11e3-81ab-4c9367dc0958")
    );
    assert_eq!(
        a.payload,
        serde_json::json!("Hello, World!"),
        "a body that is not JSON is kept as text"
    );
    let e = accept(
        &c,
        &Request {
            headers: &h,
            body: b"Hello, World?",
        },
        0,
    )
    .unwrap_err();
    assert_eq!(e.code, "bad-signature");
    let h = headers(&[("X-Hub-Signature-256", "sha1=abc")]);
    assert_eq!(
        accept(
            &c,
            &Request {
                headers: &h,
                body: b"x"
            },
            0
        )
        .unwrap_err()
        .status,
        400
    );
}

#[test]
fn stripe_as_documented() {
    // Stripe: HMAC-SHA256 of "<t>.<body>" with the endpoint secret, hex, in v1=.
    let secret = "whsec_test_secret";
    let body = r#"{"id": "evt_1", "type": "payment_intent.succeeded", "data": {"object": {"customer": "cus_9"}}}"#;
    let t = 1_700_000_000i64;
    let v1 = hex(&hmac256(
        secret.as_bytes(),
        format!("{t}.{body}").as_bytes(),
    ));
    let c = config(serde_json::json!({"scheme": "stripe", "secret": secret,
        "key": "/data/object/customer"}));
    let header = format!("t={t},v1=00ff,v1={v1},v0=deadbeef");
    let h = headers(&[("Stripe-Signature", &header)]);
    let a = accept(
        &c,
        &Request {
            headers: &h,
            body: body.as_bytes(),
        },
        t + 60,
    )
    .unwrap();
    assert_eq!(
        (a.id.as_deref(), a.event_type.as_str(), a.key.as_deref()),
        (Some("evt_1"), "payment_intent.succeeded", Some("cus_9"))
    );
    assert_eq!(
        accept(
            &c,
            &Request {
                headers: &h,
                body: body.as_bytes()
            },
            t + 301
        )
        .unwrap_err()
        .code,
        "stale-timestamp"
    );
    let h = headers(&[("Stripe-Signature", &format!("t={t},v1=00ff"))]);
    assert_eq!(
        accept(
            &c,
            &Request {
                headers: &h,
                body: body.as_bytes()
            },
            t
        )
        .unwrap_err()
        .code,
        "bad-signature"
    );
}

#[test]
fn generic_hmac_shopify_and_slack_styles() {
    // Shopify: base64 HMAC-SHA256 of the body in X-Shopify-Hmac-Sha256.
    let body = br#"{"id": 820982911946154508}"#;
    let sig = STANDARD.encode(hmac256(b"shpss_1", body));
    let c = config(serde_json::json!({"scheme": "hmac", "secret": "shpss_1",
        "header": "X-Shopify-Hmac-Sha256", "encoding": "base64", "event_type": "header:X-Shopify-Topic",
        "id": "header:X-Shopify-Webhook-Id"}));
    let h = headers(&[
        ("X-Shopify-Hmac-Sha256", &sig),
        ("X-Shopify-Topic", "orders/create"),
        ("X-Shopify-Webhook-Id", "b54557e4"),
    ]);
    let a = accept(&c, &Request { headers: &h, body }, 0).unwrap();
    assert_eq!(
        (a.event_type.as_str(), a.id.as_deref()),
        ("orders/create", Some("b54557e4"))
    );
    // Slack: "v0=" + hex HMAC-SHA256 of "v0:<timestamp>:<body>", timestamp within tolerance.
    let body = b"token=x&team_id=T1";
    let ts = 1_531_420_618i64;
    let sig = format!(
        "v0={}",
        hex(&hmac256(
            b"8f742231b10e8888abcd99yyyzzz85a5",
            format!("v0:{ts}:")
                .as_bytes()
                .iter()
                .chain(body.iter())
                .copied()
                .collect::<Vec<_>>()
                .as_slice()
        ))
    );
    let c = config(
        serde_json::json!({"scheme": "hmac", "secret": "8f742231b10e8888abcd99yyyzzz85a5",
        "header": "X-Slack-Signature", "prefix": "v0=",
        "template": "v0:{header:X-Slack-Request-Timestamp}:{body}",
        "timestamp_header": "X-Slack-Request-Timestamp"}),
    );
    let h = headers(&[
        ("X-Slack-Signature", &sig),
        ("X-Slack-Request-Timestamp", &ts.to_string()),
    ]);
    assert!(accept(&c, &Request { headers: &h, body }, ts).is_ok());
    assert_eq!(
        accept(&c, &Request { headers: &h, body }, ts + 3600)
            .unwrap_err()
            .code,
        "stale-timestamp"
    );
    // SHA-1 and SHA-512, hex.
    for (alg, len) in [("sha1", 20), ("sha512", 64)] {
        let c = config(
            serde_json::json!({"scheme": "hmac", "secret": "k", "header": "X-Sig",
            "algorithm": alg}),
        );
        let mac = crate::schemes_mac_for_tests(alg, b"k", b"{}");
        assert_eq!(mac.len(), len);
        let h = headers(&[("X-Sig", &hex(&mac))]);
        assert!(
            accept(
                &c,
                &Request {
                    headers: &h,
                    body: b"{}"
                },
                0
            )
            .is_ok(),
            "{alg}"
        );
        let h = headers(&[("X-Sig", &hex(&mac[1..]))]);
        assert!(
            accept(
                &c,
                &Request {
                    headers: &h,
                    body: b"{}"
                },
                0
            )
            .is_err(),
            "{alg}"
        );
    }
}

#[test]
fn basic_and_api_key() {
    let c = config(serde_json::json!({"scheme": "basic", "secret": "hooks:s3cret"}));
    let good = format!("Basic {}", STANDARD.encode("hooks:s3cret"));
    let h = headers(&[("Authorization", &good)]);
    assert!(
        accept(
            &c,
            &Request {
                headers: &h,
                body: b"{}"
            },
            0
        )
        .is_ok()
    );
    let bad = format!("Basic {}", STANDARD.encode("hooks:guess"));
    let h = headers(&[("Authorization", &bad)]);
    assert_eq!(
        accept(
            &c,
            &Request {
                headers: &h,
                body: b"{}"
            },
            0
        )
        .unwrap_err()
        .status,
        401
    );
    let c = config(serde_json::json!({"scheme": "api-key", "secrets": ["k1", "k2"]}));
    for h in [
        headers(&[("x-api-key", "k2")]),
        headers(&[("Authorization", "Bearer k1")]),
    ] {
        assert!(
            accept(
                &c,
                &Request {
                    headers: &h,
                    body: b"{}"
                },
                0
            )
            .is_ok()
        );
    }
    let h = headers(&[("x-api-key", "k3")]);
    assert!(
        accept(
            &c,
            &Request {
                headers: &h,
                body: b"{}"
            },
            0
        )
        .is_err()
    );
}

#[test]
fn configurations_are_checked() {
    for (bad, why) in [
        (serde_json::json!({"secret": "x"}), "scheme"),
        (
            serde_json::json!({"scheme": "nope", "secret": "x"}),
            "scheme",
        ),
        (serde_json::json!({"scheme": "github"}), "secret"),
        (
            serde_json::json!({"scheme": "standard-webhooks", "secret": "plain"}),
            "whsec_",
        ),
        (
            serde_json::json!({"scheme": "standard-webhooks", "secret": "whsec_!!"}),
            "base64",
        ),
        (
            serde_json::json!({"scheme": "hmac", "secret": "x"}),
            "header",
        ),
        (
            serde_json::json!({"scheme": "github", "secret": "x", "tolerance": "2d"}),
            "unit",
        ),
        (
            serde_json::json!({"scheme": "github", "secret": "x", "tolerance": "48h"}),
            "24 h",
        ),
        (
            serde_json::json!({"scheme": "github", "secret": "x", "event_type": "type"}),
            "pointer",
        ),
        (
            serde_json::json!({"scheme": "github", "secret": "x", "extra": 1}),
            "unknown",
        ),
        (
            serde_json::json!({"scheme": "github", "secrets": vec!["s"; 9]}),
            "at most",
        ),
    ] {
        let e = Config::parse(&bad.to_string()).unwrap_err();
        assert!(e.0.contains(why), "{bad}: {e}");
    }
    let c = config(serde_json::json!({"scheme": "github", "secret": "x", "tolerance": "90s"}));
    assert_eq!(c.tolerance, 90);
}
