//! Confluent Schema Registry's REST API, per tenant, under `/registry` on the main port.
//!
//! Confluent's clients and serializers work unchanged: the API key decides the tenant (HTTP
//! Basic `key-id:secret` as they send it), bodies and answers are
//! `application/vnd.schemaregistry.v1+json`, errors are `{"error_code", "message"}` with
//! Confluent's codes, query booleans are case-insensitive and subjects may be
//! percent-encoded. Reads need any key of the tenant; registering needs `produce` on the
//! subject's topic (`orders` for `orders-value`), deleting and configuring a subject need
//! `admin` on it, and the global configuration and mode need a tenant admin.

use std::sync::Arc;

use http::{Method, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use sluice_registry::{
    Change, Level, Mode, Reference, Registration, RegistryError, SchemaType, Subjects, Version,
    VersionSpec,
};

use crate::app::App;
use crate::call::{Body, Call};
use sluice_ingest::schemas::registry_error;
use sluice_tenancy::auth::{Principal, Role};
use sluice_tenancy::error::ApiError;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";
/// Largest registration body.
const MAX_SCHEMA_BODY: usize = 8 << 20;

/// Serve one registry call; `rest` is the path after `/registry`.
pub async fn handle(
    app: &Arc<App>,
    who: &Principal,
    rest: &[&str],
    call: Call,
) -> Result<Response<Body>, ApiError> {
    let answer = route(app, who, rest, call).await;
    Ok(match answer {
        Ok(Answer::Json(v)) => respond(StatusCode::OK, &v),
        Ok(Answer::Raw(text)) => Response::builder()
            .status(StatusCode::OK)
            .header(http::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(crate::call::full(text))
            .expect("response builds"),
        Err(e) => respond(
            e.status,
            &json!({"error_code": e.error_code, "message": e.message}),
        ),
    })
}

enum Answer {
    Json(Value),
    /// A schema's text as it is (the `/schema` endpoints).
    Raw(String),
}

fn respond(status: StatusCode, v: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, CONTENT_TYPE)
        .body(crate::call::full(
            serde_json::to_vec(v).expect("serializes"),
        ))
        .expect("response builds")
}

/// The topic a subject belongs to under the TopicNameStrategy; other subjects stand for
/// themselves.
fn topic_of(subject: &str) -> &str {
    subject
        .strip_suffix("-value")
        .or_else(|| subject.strip_suffix("-key"))
        .unwrap_or(subject)
}

fn flag(call: &Call, name: &str) -> bool {
    call.query(name)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn version_spec(s: &str) -> Result<VersionSpec, ApiError> {
    s.parse::<VersionSpec>().map_err(registry_error)
}

fn check_subject(subject: &str) -> Result<(), ApiError> {
    if subject.is_empty() || subject.len() > 255 || subject.chars().any(char::is_control) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            42208,
            format!("invalid subject `{subject}`"),
        ));
    }
    Ok(())
}

/// Subjects are authorized through the topic they belong to: a key that may produce to or
/// consume from it may read the subject's schemas (registering needs produce, deleting admin).
fn may_read(who: &Principal, subject: &str) -> bool {
    let topic = topic_of(subject);
    who.can(Role::Consume, topic) || who.can(Role::Produce, topic)
}

fn not_readable(subject: &str) -> ApiError {
    ApiError::forbidden(format!(
        "this key may neither produce to nor consume from the topic of subject `{subject}`"
    ))
}

fn require_read(who: &Principal, subject: &str) -> Result<(), ApiError> {
    if may_read(who, subject) {
        Ok(())
    } else {
        Err(not_readable(subject))
    }
}

fn require_admin(who: &Principal, subject: Option<&str>) -> Result<(), ApiError> {
    match subject {
        Some(s) => who.require(Role::Admin, topic_of(s)),
        None if who.is_tenant_admin() => Ok(()),
        None => Err(ApiError::forbidden(
            "the registry's global configuration needs a tenant admin key",
        )),
    }
}

/// A version as Confluent shows it (`schemaType` only when not AVRO).
fn version_json(v: &Version) -> Value {
    let mut o = json!({
        "subject": v.subject,
        "version": v.version,
        "id": v.id,
        "schema": v.schema,
    });
    if v.schema_type != SchemaType::Avro {
        o["schemaType"] = json!(v.schema_type.as_str());
    }
    if !v.references.is_empty() {
        o["references"] = json!(v.references);
    }
    o
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaBody {
    schema: Option<String>,
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<Reference>,
    id: Option<u32>,
    version: Option<u32>,
}

impl SchemaBody {
    fn registration(self) -> Result<Registration, ApiError> {
        let schema_type = match self.schema_type.as_deref() {
            None | Some("") => SchemaType::Avro,
            Some(t) => t
                .parse()
                .map_err(|e: String| registry_error(RegistryError::InvalidSchema(e)))?,
        };
        let schema = self
            .schema
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| registry_error(RegistryError::InvalidSchema("Empty schema".into())))?;
        Ok(Registration {
            schema_type,
            schema,
            references: self.references,
            id: self.id,
            version: self.version,
        })
    }
}

async fn schema_body(call: Call) -> Result<Registration, ApiError> {
    call.json::<SchemaBody>(MAX_SCHEMA_BODY)
        .await?
        .registration()
}

async fn route(
    app: &Arc<App>,
    who: &Principal,
    rest: &[&str],
    call: Call,
) -> Result<Answer, ApiError> {
    let tenant = who.tenant.clone();
    let registry = &app.registry;
    let read = |f: &dyn Fn(&Subjects) -> Result<Value, RegistryError>| {
        registry
            .read(&tenant, f)
            .map(Answer::Json)
            .map_err(registry_error)
    };
    let m = call.method.clone();
    match (rest, &m) {
        ([], &Method::GET) => Ok(Answer::Json(json!({}))),
        (["schemas", "types"], &Method::GET) => Ok(Answer::Json(json!(["JSON", "AVRO"]))),
        (["schemas", "ids", id, tail @ ..], &Method::GET) => {
            let id: u32 = id
                .parse()
                .map_err(|_| registry_error(RegistryError::SchemaNotFound((*id).to_owned())))?;
            let deleted = flag(&call, "deleted");
            // Readable through any subject that holds it.
            let holders = registry.read(&tenant, |s| s.id_versions(id, true).unwrap_or_default());
            if !holders.is_empty() && !holders.iter().any(|(subject, _)| may_read(who, subject)) {
                return Err(not_readable(&holders[0].0));
            }
            match tail {
                // `?subject=` is a hint (for schema contexts) and changes nothing here.
                [] => read(&|s| {
                    let found = s.by_id(id)?;
                    let mut o = json!({ "schema": found.schema });
                    if found.schema_type != SchemaType::Avro {
                        o["schemaType"] = json!(found.schema_type.as_str());
                    }
                    if !found.references.is_empty() {
                        o["references"] = json!(found.references);
                    }
                    Ok(o)
                }),
                ["schema"] => registry
                    .read(&tenant, |s| s.by_id(id))
                    .map(|b| Answer::Raw(b.schema))
                    .map_err(registry_error),
                ["subjects"] => read(&|s| {
                    let mut subjects: Vec<String> = s
                        .id_versions(id, deleted)?
                        .into_iter()
                        .map(|(s, _)| s)
                        .collect();
                    subjects.sort();
                    subjects.dedup();
                    Ok(json!(subjects))
                }),
                ["versions"] => read(&|s| {
                    Ok(Value::Array(
                        s.id_versions(id, deleted)?
                            .into_iter()
                            .map(|(subject, version)| json!({"subject": subject, "version": version}))
                            .collect(),
                    ))
                }),
                _ => Err(ApiError::not_found("no such registry resource")),
            }
        }
        (["subjects"], &Method::GET) => {
            let deleted = flag(&call, "deleted");
            let prefix = call.query("subjectPrefix").unwrap_or("").to_owned();
            read(&|s| {
                let mut subjects = s.subjects(deleted, &prefix);
                subjects.retain(|subject| may_read(who, subject));
                Ok(json!(subjects))
            })
        }
        (["subjects", subject], &Method::POST) => {
            check_subject(subject)?;
            require_read(who, subject)?;
            let deleted = flag(&call, "deleted");
            let r = schema_body(call).await?;
            read(&|s| {
                s.lookup(subject, r.schema_type, &r.schema, &r.references, deleted)
                    .map(version_json)
            })
        }
        (["subjects", subject], &Method::DELETE) => {
            check_subject(subject)?;
            require_admin(who, Some(subject))?;
            let permanent = flag(&call, "permanent");
            let versions = registry
                .write(&tenant, |s| s.delete_subject(subject, permanent))
                .await?;
            Ok(Answer::Json(json!(versions)))
        }
        (["subjects", subject, "versions"], &Method::GET) => {
            require_read(who, subject)?;
            let deleted = flag(&call, "deleted");
            read(&|s| Ok(json!(s.versions(subject, deleted)?)))
        }
        (["subjects", subject, "versions"], &Method::POST) => {
            check_subject(subject)?;
            who.require(Role::Produce, topic_of(subject))?;
            let r = schema_body(call).await?;
            let subject = (*subject).to_owned();
            let v = registry
                .write_blocking(&tenant, move |s| {
                    let out = s.register(&subject, r)?;
                    Ok((out.version, out.change.into_iter().collect()))
                })
                .await?;
            let mut answer = version_json(&v);
            if answer.get("schemaType").is_none() {
                answer["schemaType"] = json!("AVRO");
            }
            Ok(Answer::Json(answer))
        }
        (["subjects", subject, "versions", v, tail @ ..], &Method::GET) => {
            require_read(who, subject)?;
            let spec = version_spec(v)?;
            let deleted = flag(&call, "deleted");
            match tail {
                [] => read(&|s| s.version(subject, spec, deleted).map(version_json)),
                ["schema"] => registry
                    .read(&tenant, |s| {
                        s.version(subject, spec, deleted).map(|v| v.schema.clone())
                    })
                    .map(Answer::Raw)
                    .map_err(registry_error),
                ["referencedby"] => read(&|s| {
                    let v = s.version(subject, spec, deleted)?;
                    Ok(json!(s.referenced_by(subject, v.version)))
                }),
                _ => Err(ApiError::not_found("no such registry resource")),
            }
        }
        (["subjects", subject, "versions", v], &Method::DELETE) => {
            let spec = version_spec(v)?;
            require_admin(who, Some(subject))?;
            let permanent = flag(&call, "permanent");
            let version = registry
                .write(&tenant, |s| {
                    let (v, c) = s.delete_version(subject, spec, permanent)?;
                    Ok((v, vec![c]))
                })
                .await?;
            Ok(Answer::Json(json!(version)))
        }
        (["compatibility", "subjects", subject, "versions", tail @ ..], &Method::POST) => {
            require_read(who, subject)?;
            let against = match tail {
                [] => None,
                [v] => Some(version_spec(v)?),
                _ => return Err(ApiError::not_found("no such registry resource")),
            };
            let verbose = flag(&call, "verbose");
            let r = schema_body(call).await?;
            let level = registry.read(&tenant, |s| s.level(Some(subject)));
            let subject = (*subject).to_owned();
            let problems = registry
                .read_blocking(&tenant, move |s| {
                    if against.is_none() && !s.subject_exists(&subject) {
                        return s
                            .parse(r.schema_type, &r.schema, &r.references)
                            .map(|_| vec![]);
                    }
                    s.test_compatibility(&subject, against, r.schema_type, &r.schema, &r.references)
                })
                .await?
                .map_err(registry_error)?;
            let mut answer = json!({ "is_compatible": problems.is_empty() });
            if verbose {
                let mut messages: Vec<String> = problems.iter().map(ToString::to_string).collect();
                if !problems.is_empty() {
                    messages.push(format!("{{compatibility: '{level}'}}"));
                }
                answer["messages"] = json!(messages);
            }
            Ok(Answer::Json(answer))
        }
        (["config"], _) | (["config", _], _) => config(app, who, rest, call).await,
        (["mode"], _) | (["mode", _], _) => mode(app, who, rest, call).await,
        _ => Err(ApiError::not_found(format!(
            "no such registry resource: {m} /registry/{}",
            rest.join("/")
        ))),
    }
}

#[derive(Deserialize)]
struct ConfigBody {
    compatibility: Option<String>,
    #[serde(rename = "compatibilityLevel")]
    compatibility_level: Option<String>,
}

async fn config(
    app: &Arc<App>,
    who: &Principal,
    rest: &[&str],
    call: Call,
) -> Result<Answer, ApiError> {
    let tenant = who.tenant.clone();
    let subject = rest.get(1).map(|s| (*s).to_owned());
    let shown = |l: Level| Answer::Json(json!({ "compatibilityLevel": l.as_str() }));
    match call.method {
        Method::GET => {
            let default_to_global = flag(&call, "defaultToGlobal");
            app.registry
                .read(&tenant, |s| s.config(subject.as_deref(), default_to_global))
                .map(shown)
                .map_err(registry_error)
        }
        Method::PUT => {
            require_admin(who, subject.as_deref())?;
            let body: ConfigBody = call.json(64 << 10).await?;
            let text = body
                .compatibility
                .or(body.compatibility_level)
                .unwrap_or_default();
            let level: Level = text
                .parse()
                .map_err(|e: String| registry_error(RegistryError::InvalidCompatibility(e)))?;
            app.registry
                .write(&tenant, |_| {
                    Ok((
                        (),
                        vec![Change::Config {
                            subject: subject.clone(),
                            level: Some(level),
                        }],
                    ))
                })
                .await?;
            Ok(Answer::Json(json!({ "compatibility": level.as_str() })))
        }
        Method::DELETE => {
            require_admin(who, subject.as_deref())?;
            let old = app
                .registry
                .write(&tenant, |s| {
                    if let Some(subj) = &subject
                        && !s.subject_exists(subj)
                    {
                        return Err(RegistryError::SubjectNotFound(subj.clone()));
                    }
                    let old = s.config(subject.as_deref(), false)?;
                    Ok((
                        old,
                        vec![Change::Config {
                            subject: subject.clone(),
                            level: None,
                        }],
                    ))
                })
                .await?;
            Ok(shown(old))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

#[derive(Deserialize)]
struct ModeBody {
    mode: String,
}

async fn mode(
    app: &Arc<App>,
    who: &Principal,
    rest: &[&str],
    call: Call,
) -> Result<Answer, ApiError> {
    let tenant = who.tenant.clone();
    let subject = rest.get(1).map(|s| (*s).to_owned());
    let shown = |m: Mode| Answer::Json(json!({ "mode": m.as_str() }));
    match call.method {
        Method::GET => {
            let default_to_global = flag(&call, "defaultToGlobal");
            app.registry
                .read(&tenant, |s| s.mode(subject.as_deref(), default_to_global))
                .map(shown)
                .map_err(registry_error)
        }
        Method::PUT => {
            require_admin(who, subject.as_deref())?;
            let force = flag(&call, "force");
            let body: ModeBody = call.json(64 << 10).await?;
            let mode: Mode = body
                .mode
                .parse()
                .map_err(|e: String| registry_error(RegistryError::InvalidMode(e)))?;
            app.registry
                .write(&tenant, |s| {
                    Ok(((), vec![s.set_mode(subject.as_deref(), mode, force)?]))
                })
                .await?;
            Ok(shown(mode))
        }
        Method::DELETE => {
            require_admin(who, subject.as_deref())?;
            let old = app
                .registry
                .write(&tenant, |s| {
                    let old = s.mode(subject.as_deref(), false)?;
                    Ok((
                        old,
                        vec![Change::Mode {
                            subject: subject.clone(),
                            mode: None,
                        }],
                    ))
                })
                .await?;
            Ok(shown(old))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}
