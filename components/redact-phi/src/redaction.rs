//! The redaction rules, free of the WIT bindings so they test natively.

use serde_json::Value;
use sha2::{Digest, Sha256};

const DEFAULT_KEYS: [&str; 20] = [
    "ssn",
    "social_security_number",
    "mrn",
    "medical_record_number",
    "patient_id",
    "patientid",
    "name",
    "given",
    "family",
    "first_name",
    "last_name",
    "birthdate",
    "birth_date",
    "dob",
    "address",
    "phone",
    "telecom",
    "email",
    "insurance_id",
    "member_id",
];

enum Mode {
    Mask { keep_last: usize },
    Hash { salt: String },
}

pub struct Config {
    fields: Vec<String>,
    keys: Vec<String>,
    mode: Mode,
}

impl Config {
    pub fn parse(text: &str) -> Result<Config, String> {
        let v: Value = if text.trim().is_empty() {
            Value::Object(Default::default())
        } else {
            serde_json::from_str(text).map_err(|e| format!("config is not JSON: {e}"))?
        };
        let o = v.as_object().ok_or("config must be a JSON object")?;
        for k in o.keys() {
            if !["fields", "keys", "mode", "salt", "keepLast"].contains(&k.as_str()) {
                return Err(format!("unknown config field `{k}`"));
            }
        }
        let strings = |name: &str| -> Result<Option<Vec<String>>, String> {
            match o.get(name) {
                None => Ok(None),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|s| {
                        s.as_str()
                            .map(str::to_owned)
                            .ok_or(format!("`{name}` must hold strings"))
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(Some),
                Some(_) => Err(format!("`{name}` must be an array of strings")),
            }
        };
        let fields = strings("fields")?.unwrap_or_default();
        if let Some(f) = fields.iter().find(|f| !f.starts_with('/')) {
            return Err(format!("`fields` holds JSON pointers; `{f}` is not one"));
        }
        let keys = strings("keys")?
            .unwrap_or_else(|| DEFAULT_KEYS.iter().map(|k| (*k).to_owned()).collect())
            .into_iter()
            .map(|k| k.to_ascii_lowercase())
            .collect();
        let mode = match o.get("mode").and_then(Value::as_str).unwrap_or("mask") {
            "mask" => Mode::Mask {
                keep_last: o.get("keepLast").and_then(Value::as_u64).unwrap_or(0) as usize,
            },
            "hash" => Mode::Hash {
                salt: o
                    .get("salt")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            },
            other => {
                return Err(format!(
                    "`mode` must be \"mask\" or \"hash\", not `{other}`"
                ));
            }
        };
        Ok(Config { fields, keys, mode })
    }

    fn replace(&self, v: &Value) -> Value {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Null => return Value::Null,
            other => other.to_string(),
        };
        match &self.mode {
            Mode::Mask { keep_last } => {
                let chars: Vec<char> = text.chars().collect();
                let keep = (*keep_last).min(chars.len() / 2);
                let tail: String = chars[chars.len() - keep..].iter().collect();
                Value::String(format!("***{tail}"))
            }
            Mode::Hash { salt } => {
                let digest = Sha256::new()
                    .chain_update(salt)
                    .chain_update(text.as_bytes())
                    .finalize();
                let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
                Value::String(format!("sha256:{hex}"))
            }
        }
    }

    fn walk(&self, v: &mut Value, count: &mut usize) {
        match v {
            Value::Object(o) => {
                for (k, child) in o.iter_mut() {
                    if self.keys.iter().any(|key| key.eq_ignore_ascii_case(k)) {
                        redact_all(self, child, count);
                    } else {
                        self.walk(child, count);
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|c| self.walk(c, count)),
            _ => {}
        }
    }
}

/// Redact a whole subtree (an address object, a list of names).
fn redact_all(config: &Config, v: &mut Value, count: &mut usize) {
    match v {
        Value::Object(o) => o.values_mut().for_each(|c| redact_all(config, c, count)),
        Value::Array(a) => a.iter_mut().for_each(|c| redact_all(config, c, count)),
        Value::Null => {}
        leaf => {
            *leaf = config.replace(leaf);
            *count += 1;
        }
    }
}

/// Redacted data and how many values were replaced.
pub fn redact(config: &Config, data: &[u8]) -> Result<(Vec<u8>, usize), String> {
    let mut doc: Value = serde_json::from_slice(data)
        .map_err(|e| format!("the event's data is not JSON, so it cannot be redacted: {e}"))?;
    let mut count = 0;
    for f in &config.fields {
        if let Some(v) = doc.pointer_mut(f) {
            redact_all(config, v, &mut count);
        }
    }
    config.walk(&mut doc, &mut count);
    Ok((serde_json::to_vec(&doc).expect("JSON serializes"), count))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATIENT: &[u8] = br#"{"event_type":"patient.admitted","payload":{"patient":{"name":[{"given":["Ada"],"family":"Lovelace"}],
        "SSN":"123-45-6789","birthDate":"1815-12-10","ward":"B"},"note":"stable","mrn":12345}}"#;

    #[test]
    fn masks_default_keys_everywhere() {
        let c = Config::parse("").unwrap();
        let (out, n) = redact(&c, PATIENT).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        let text = String::from_utf8(out).unwrap();
        for secret in ["Ada", "Lovelace", "123-45-6789", "1815-12-10", "12345"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert_eq!(v["payload"]["patient"]["ward"], "B");
        assert_eq!(v["payload"]["note"], "stable");
        assert_eq!(v["event_type"], "patient.admitted");
        assert_eq!(n, 5);
    }

    #[test]
    fn hash_mode_is_stable_and_salted() {
        let a = Config::parse(r#"{"keys":["ssn"],"mode":"hash","salt":"s1"}"#).unwrap();
        let b = Config::parse(r#"{"keys":["ssn"],"mode":"hash","salt":"s2"}"#).unwrap();
        let one = redact(&a, br#"{"ssn":"123"}"#).unwrap().0;
        assert_eq!(one, redact(&a, br#"{"ssn":"123"}"#).unwrap().0);
        assert_ne!(one, redact(&b, br#"{"ssn":"123"}"#).unwrap().0);
        assert!(String::from_utf8(one).unwrap().contains("sha256:"));
    }

    #[test]
    fn pointers_and_keep_last() {
        let c = Config::parse(r#"{"keys":[],"fields":["/card"],"keepLast":4}"#).unwrap();
        let (out, _) = redact(&c, br#"{"card":"4111111111111111","name":"x"}"#).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"card":"***1111","name":"x"}"#
        );
    }

    #[test]
    fn refuses_what_it_cannot_redact() {
        assert!(redact(&Config::parse("").unwrap(), b"\x00\x01binary").is_err());
        assert!(Config::parse(r#"{"mode":"rot13"}"#).is_err());
        assert!(Config::parse(r#"{"fields":["ssn"]}"#).is_err());
    }
}
