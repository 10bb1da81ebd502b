//! One tenant's registry: subjects, their versions, global ids, configuration and modes, as
//! Confluent's Schema Registry keeps them.
//!
//! State changes only through [`Change`]s: an operation checks the request against the state
//! and returns the change to make; the caller makes it durable, then [`Subjects::apply`]s it.
//! Replaying the stored changes in order rebuilds the same state (ids never change).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::schema::{self, Level, Parsed, Problem, Reference, SchemaType};

/// A durable change, stored as JSON under [`Change::key`] in a compacted topic (the newest
/// record per key wins, so a key holds the whole truth about its item).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Change {
    /// A version of a subject (also its soft deletion, or its permanent one: `forgotten`).
    Schema(Version),
    /// Compatibility level of a subject, or global (`subject: None`); `level: None` removes it.
    Config {
        subject: Option<String>,
        level: Option<Level>,
    },
    /// Mode of a subject, or global; `mode: None` removes it.
    Mode {
        subject: Option<String>,
        mode: Option<Mode>,
    },
}

impl Change {
    pub fn key(&self) -> String {
        match self {
            Change::Schema(v) => format!("schema/{}/{}", v.subject, v.version),
            Change::Config { subject, .. } => {
                format!("config/{}", subject.as_deref().unwrap_or(""))
            }
            Change::Mode { subject, .. } => format!("mode/{}", subject.as_deref().unwrap_or("")),
        }
    }
}

/// One version of a subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Version {
    pub subject: String,
    pub version: u32,
    pub id: u32,
    #[serde(rename = "schemaType")]
    pub schema_type: SchemaType,
    /// The normalized schema text.
    pub schema: String,
    #[serde(default)]
    pub references: Vec<Reference>,
    #[serde(default)]
    pub deleted: bool,
    /// Permanently deleted: kept only so its id is never given to another schema.
    #[serde(default)]
    pub forgotten: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Mode {
    #[default]
    Readwrite,
    Readonly,
    ReadonlyOverride,
    Import,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        Ok(match s.to_ascii_uppercase().as_str() {
            "READWRITE" => Mode::Readwrite,
            "READONLY" => Mode::Readonly,
            "READONLY_OVERRIDE" => Mode::ReadonlyOverride,
            "IMPORT" => Mode::Import,
            _ => return Err(format!("invalid mode `{s}`")),
        })
    }
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Readwrite => "READWRITE",
            Mode::Readonly => "READONLY",
            Mode::ReadonlyOverride => "READONLY_OVERRIDE",
            Mode::Import => "IMPORT",
        }
    }
}

/// Errors with Confluent's codes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RegistryError {
    #[error("Subject '{0}' not found.")]
    SubjectNotFound(String),
    #[error("Version {0} not found.")]
    VersionNotFound(String),
    #[error("Schema {0} not found")]
    SchemaNotFound(String),
    #[error("Subject '{0}' was soft deleted. Set permanent=true to delete permanently")]
    SubjectSoftDeleted(String),
    #[error("Subject '{0}' was not deleted first before being permanently deleted")]
    SubjectNotSoftDeleted(String),
    #[error(
        "Version {1} of subject '{0}' was soft deleted. Set permanent=true to delete permanently"
    )]
    VersionSoftDeleted(String, u32),
    #[error("Version {1} of subject '{0}' was not deleted first before being permanently deleted")]
    VersionNotSoftDeleted(String, u32),
    #[error("Subject '{0}' does not have subject-level compatibility configured")]
    SubjectConfigNotFound(String),
    #[error("Subject '{0}' does not have subject-level mode configured")]
    SubjectModeNotFound(String),
    #[error("Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{}]", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))]
    Incompatible {
        subject: String,
        problems: Vec<Problem>,
    },
    #[error("Invalid schema: {0}")]
    InvalidSchema(String),
    #[error(
        "The specified version '{0}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""
    )]
    InvalidVersion(String),
    #[error("Invalid compatibility level: {0}")]
    InvalidCompatibility(String),
    #[error("Invalid mode: {0}")]
    InvalidMode(String),
    #[error("{0}")]
    NotPermitted(String),
    #[error("One or more references exist to the schema {{subject={0}, version={1}}}")]
    ReferenceExists(String, u32),
    #[error("Compatibility check too complex: {0}")]
    TooComplex(String),
}

impl From<crate::schema::TooComplex> for RegistryError {
    fn from(e: crate::schema::TooComplex) -> Self {
        RegistryError::TooComplex(e.0)
    }
}

impl RegistryError {
    /// Confluent's `error_code`.
    pub fn code(&self) -> u32 {
        match self {
            RegistryError::SubjectNotFound(_) => 40401,
            RegistryError::VersionNotFound(_) => 40402,
            RegistryError::SchemaNotFound(_) => 40403,
            RegistryError::SubjectSoftDeleted(_) => 40404,
            RegistryError::SubjectNotSoftDeleted(_) => 40405,
            RegistryError::VersionSoftDeleted(..) => 40406,
            RegistryError::VersionNotSoftDeleted(..) => 40407,
            RegistryError::SubjectConfigNotFound(_) => 40408,
            RegistryError::SubjectModeNotFound(_) => 40409,
            RegistryError::Incompatible { .. } => 409,
            RegistryError::InvalidSchema(_) => 42201,
            RegistryError::InvalidVersion(_) => 42202,
            RegistryError::InvalidCompatibility(_) => 42203,
            RegistryError::InvalidMode(_) => 42204,
            RegistryError::NotPermitted(_) => 42205,
            RegistryError::ReferenceExists(..) => 42206,
            RegistryError::TooComplex(_) => 42207,
        }
    }

    /// The HTTP status: the code's first three digits.
    pub fn status(&self) -> u16 {
        match self.code() {
            409 => 409,
            c => (c / 100) as u16,
        }
    }
}

/// `latest` (or -1) or a version number, as URLs give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSpec {
    Latest,
    Number(u32),
}

impl std::str::FromStr for VersionSpec {
    type Err = RegistryError;
    fn from_str(s: &str) -> Result<VersionSpec, RegistryError> {
        if s.eq_ignore_ascii_case("latest") || s == "-1" {
            return Ok(VersionSpec::Latest);
        }
        match s.parse::<u32>() {
            Ok(n) if n >= 1 && n <= i32::MAX as u32 => Ok(VersionSpec::Number(n)),
            _ => Err(RegistryError::InvalidVersion(s.to_owned())),
        }
    }
}

/// What a registration asks for.
#[derive(Debug, Clone)]
pub struct Registration {
    pub schema_type: SchemaType,
    pub schema: String,
    pub references: Vec<Reference>,
    /// IMPORT mode only: the id (and version) to register under.
    pub id: Option<u32>,
    pub version: Option<u32>,
}

/// A registration's answer: the version (new or existing) and the change to store, if any.
#[derive(Debug, Clone)]
pub struct Registered {
    pub version: Version,
    pub change: Option<Change>,
}

/// A schema by id, as `GET /schemas/ids/{id}` shows it.
#[derive(Debug, Clone)]
pub struct ById {
    pub schema_type: SchemaType,
    pub schema: String,
    pub references: Vec<Reference>,
}

#[derive(Default, Debug, Clone)]
pub struct Subjects {
    /// subject → version → version record (soft-deleted ones included, forgotten ones not).
    versions: BTreeMap<String, BTreeMap<u32, Version>>,
    /// Every id ever given → (subject, version) pairs that hold it now.
    ids: BTreeMap<u32, Vec<(String, u32)>>,
    /// (type, normalized text, references) → id, for id reuse across subjects.
    by_content: HashMap<(SchemaType, String, Vec<Reference>), u32>,
    next_id: u32,
    config: Option<Level>,
    subject_config: BTreeMap<String, Level>,
    mode: Option<Mode>,
    subject_mode: BTreeMap<String, Mode>,
    /// Incremented by every change: lets caches of derived things (validators) notice.
    generation: u64,
}

impl Subjects {
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn apply(&mut self, change: &Change) {
        self.generation += 1;
        match change {
            Change::Schema(v) => {
                self.next_id = self.next_id.max(v.id + 1);
                let holders = self.ids.entry(v.id).or_default();
                holders.retain(|(s, n)| !(s == &v.subject && *n == v.version));
                if v.forgotten {
                    if let Some(versions) = self.versions.get_mut(&v.subject) {
                        versions.remove(&v.version);
                        if versions.is_empty() {
                            self.versions.remove(&v.subject);
                        }
                    }
                    return;
                }
                holders.push((v.subject.clone(), v.version));
                self.by_content
                    .entry((v.schema_type, v.schema.clone(), v.references.clone()))
                    .or_insert(v.id);
                self.versions
                    .entry(v.subject.clone())
                    .or_default()
                    .insert(v.version, v.clone());
            }
            Change::Config { subject, level } => match (subject, level) {
                (None, l) => self.config = *l,
                (Some(s), Some(l)) => {
                    self.subject_config.insert(s.clone(), *l);
                }
                (Some(s), None) => {
                    self.subject_config.remove(s);
                }
            },
            Change::Mode { subject, mode } => match (subject, mode) {
                (None, m) => self.mode = *m,
                (Some(s), Some(m)) => {
                    self.subject_mode.insert(s.clone(), *m);
                }
                (Some(s), None) => {
                    self.subject_mode.remove(s);
                }
            },
        }
    }

    // ---- reads ----

    fn live(&self, subject: &str, deleted: bool) -> impl Iterator<Item = &Version> {
        self.versions
            .get(subject)
            .into_iter()
            .flat_map(|v| v.values())
            .filter(move |v| deleted || !v.deleted)
    }

    pub fn subjects(&self, deleted: bool, prefix: &str) -> Vec<String> {
        self.versions
            .keys()
            .filter(|s| s.starts_with(prefix) && self.live(s, deleted).next().is_some())
            .cloned()
            .collect()
    }

    pub fn versions(&self, subject: &str, deleted: bool) -> Result<Vec<u32>, RegistryError> {
        let v: Vec<u32> = self.live(subject, deleted).map(|v| v.version).collect();
        if v.is_empty() {
            return Err(RegistryError::SubjectNotFound(subject.into()));
        }
        Ok(v)
    }

    pub fn version(
        &self,
        subject: &str,
        spec: VersionSpec,
        deleted: bool,
    ) -> Result<&Version, RegistryError> {
        if self.live(subject, deleted).next().is_none() {
            return Err(RegistryError::SubjectNotFound(subject.into()));
        }
        let found = match spec {
            VersionSpec::Latest => self.live(subject, deleted).last(),
            VersionSpec::Number(n) => self.live(subject, deleted).find(|v| v.version == n),
        };
        found.ok_or_else(|| {
            RegistryError::VersionNotFound(match spec {
                VersionSpec::Latest => "latest".into(),
                VersionSpec::Number(n) => n.to_string(),
            })
        })
    }

    pub fn by_id(&self, id: u32) -> Result<ById, RegistryError> {
        let holder = self
            .ids
            .get(&id)
            .and_then(|h| h.first())
            .and_then(|(s, n)| self.versions.get(s)?.get(n))
            .ok_or_else(|| RegistryError::SchemaNotFound(id.to_string()))?;
        Ok(ById {
            schema_type: holder.schema_type,
            schema: holder.schema.clone(),
            references: holder.references.clone(),
        })
    }

    /// (subject, version) pairs holding `id`.
    pub fn id_versions(&self, id: u32, deleted: bool) -> Result<Vec<(String, u32)>, RegistryError> {
        let holders: Vec<(String, u32)> = self
            .ids
            .get(&id)
            .into_iter()
            .flatten()
            .filter(|(s, n)| {
                self.versions
                    .get(s)
                    .and_then(|v| v.get(n))
                    .is_some_and(|v| deleted || !v.deleted)
            })
            .cloned()
            .collect();
        if holders.is_empty() {
            return Err(RegistryError::SchemaNotFound(id.to_string()));
        }
        Ok(holders)
    }

    /// Ids of the schemas that reference `subject` version `version`.
    pub fn referenced_by(&self, subject: &str, version: u32) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .versions
            .values()
            .flat_map(|v| v.values())
            .filter(|v| {
                !v.deleted
                    && v.references
                        .iter()
                        .any(|r| r.subject == subject && r.version == version)
            })
            .map(|v| v.id)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    pub fn level(&self, subject: Option<&str>) -> Level {
        subject
            .and_then(|s| self.subject_config.get(s).copied())
            .or(self.config)
            .unwrap_or_default()
    }

    pub fn config(
        &self,
        subject: Option<&str>,
        default_to_global: bool,
    ) -> Result<Level, RegistryError> {
        match subject {
            None => Ok(self.config.unwrap_or_default()),
            Some(s) => match self.subject_config.get(s) {
                Some(l) => Ok(*l),
                None if default_to_global => Ok(self.config.unwrap_or_default()),
                None => Err(RegistryError::SubjectConfigNotFound(s.into())),
            },
        }
    }

    pub fn mode(
        &self,
        subject: Option<&str>,
        default_to_global: bool,
    ) -> Result<Mode, RegistryError> {
        match subject {
            None => Ok(self.mode.unwrap_or_default()),
            Some(s) => match self.subject_mode.get(s) {
                Some(m) => Ok(*m),
                None if default_to_global => Ok(self.mode.unwrap_or_default()),
                None => Err(RegistryError::SubjectModeNotFound(s.into())),
            },
        }
    }

    fn effective_mode(&self, subject: &str) -> Mode {
        self.subject_mode
            .get(subject)
            .copied()
            .or(self.mode)
            .unwrap_or_default()
    }

    /// The referenced schemas' (name, text), dependencies first.
    fn resolve_references(
        &self,
        refs: &[Reference],
    ) -> Result<Vec<(String, String)>, RegistryError> {
        let mut out = vec![];
        for r in refs {
            let v = self
                .version(&r.subject, VersionSpec::Number(r.version), false)
                .map_err(|_| {
                    RegistryError::InvalidSchema(format!(
                        "reference `{}` names subject `{}` version {}, which does not exist",
                        r.name, r.subject, r.version
                    ))
                })?;
            for dep in self.resolve_references(&v.references)? {
                if !out.contains(&dep) {
                    out.push(dep);
                }
            }
            out.push((r.name.clone(), v.schema.clone()));
        }
        Ok(out)
    }

    /// Parse a stored or proposed schema with its references.
    pub fn parse(
        &self,
        schema_type: SchemaType,
        text: &str,
        refs: &[Reference],
    ) -> Result<Parsed, RegistryError> {
        let resolved = self.resolve_references(refs)?;
        schema::parse(schema_type, text, &resolved).map_err(RegistryError::InvalidSchema)
    }

    /// The version of `subject` with the same schema, if any.
    pub fn lookup(
        &self,
        subject: &str,
        schema_type: SchemaType,
        text: &str,
        refs: &[Reference],
        deleted: bool,
    ) -> Result<&Version, RegistryError> {
        if self.live(subject, deleted).next().is_none() {
            return Err(RegistryError::SubjectNotFound(subject.into()));
        }
        self.parse(schema_type, text, refs)?;
        let normal = schema::normalize(text).map_err(RegistryError::InvalidSchema)?;
        self.live(subject, deleted)
            .find(|v| v.schema_type == schema_type && v.schema == normal && v.references == refs)
            .ok_or_else(|| RegistryError::SchemaNotFound(String::new()))
    }

    /// Check `schema` against `subject`'s versions: those its level names (`None`), or one.
    pub fn test_compatibility(
        &self,
        subject: &str,
        against: Option<VersionSpec>,
        schema_type: SchemaType,
        text: &str,
        refs: &[Reference],
    ) -> Result<Vec<Problem>, RegistryError> {
        let new = self.parse(schema_type, text, refs)?;
        let level = self.level(Some(subject));
        let older: Vec<&Version> = match against {
            None => self.live(subject, false).collect(),
            Some(spec) => vec![self.version(subject, spec, false)?],
        };
        let older = older
            .into_iter()
            .map(|v| {
                Ok((
                    v.version,
                    self.parse(v.schema_type, &v.schema, &v.references)?,
                ))
            })
            .collect::<Result<Vec<_>, RegistryError>>()?;
        Ok(schema::check(level, &new, &older)?)
    }

    // ---- changes ----

    pub fn register(&self, subject: &str, r: Registration) -> Result<Registered, RegistryError> {
        let mode = self.effective_mode(subject);
        if matches!(mode, Mode::Readonly | Mode::ReadonlyOverride) {
            return Err(RegistryError::NotPermitted(format!(
                "Subject {subject} is in read-only mode"
            )));
        }
        if r.id.is_some() && mode != Mode::Import {
            return Err(RegistryError::NotPermitted(
                "an id may only be given in IMPORT mode".into(),
            ));
        }
        let parsed = self.parse(r.schema_type, &r.schema, &r.references)?;
        let normal = schema::normalize(&r.schema).map_err(RegistryError::InvalidSchema)?;
        if let Some(existing) = self.live(subject, false).find(|v| {
            v.schema_type == r.schema_type && v.schema == normal && v.references == r.references
        }) && r.id.is_none_or(|id| id == existing.id)
        {
            return Ok(Registered {
                version: existing.clone(),
                change: None,
            });
        }
        let content = (r.schema_type, normal.clone(), r.references.clone());
        let id = match r.id {
            Some(id) => {
                if let Ok(other) = self.by_id(id)
                    && (other.schema_type, other.schema, other.references) != content
                {
                    return Err(RegistryError::NotPermitted(format!(
                        "Overwrite new schema with id {id} is not permitted."
                    )));
                }
                id
            }
            None => self
                .by_content
                .get(&content)
                .copied()
                .unwrap_or(self.next_id.max(1)),
        };
        if mode != Mode::Import {
            let older = self
                .live(subject, false)
                .map(|v| {
                    Ok((
                        v.version,
                        self.parse(v.schema_type, &v.schema, &v.references)?,
                    ))
                })
                .collect::<Result<Vec<_>, RegistryError>>()?;
            let problems = schema::check(self.level(Some(subject)), &parsed, &older)?;
            if !problems.is_empty() {
                return Err(RegistryError::Incompatible {
                    subject: subject.into(),
                    problems,
                });
            }
        }
        let newest = self
            .versions
            .get(subject)
            .and_then(|v| v.keys().next_back().copied())
            .unwrap_or(0);
        let version = match r.version {
            Some(v)
                if self
                    .versions
                    .get(subject)
                    .is_some_and(|m| m.contains_key(&v)) =>
            {
                return Err(RegistryError::NotPermitted(format!(
                    "version {v} of subject {subject} already exists"
                )));
            }
            Some(v) => v,
            None => newest + 1,
        };
        let v = Version {
            subject: subject.into(),
            version,
            id,
            schema_type: r.schema_type,
            schema: normal,
            references: r.references,
            deleted: false,
            forgotten: false,
        };
        Ok(Registered {
            version: v.clone(),
            change: Some(Change::Schema(v)),
        })
    }

    fn writable(&self, subject: &str) -> Result<(), RegistryError> {
        if self.effective_mode(subject) == Mode::Readonly {
            return Err(RegistryError::NotPermitted(format!(
                "Subject {subject} is in read-only mode"
            )));
        }
        Ok(())
    }

    /// Soft or permanent deletion of a subject: the versions deleted and the changes.
    pub fn delete_subject(
        &self,
        subject: &str,
        permanent: bool,
    ) -> Result<(Vec<u32>, Vec<Change>), RegistryError> {
        self.writable(subject)?;
        let all: Vec<&Version> = self.live(subject, true).collect();
        if all.is_empty() {
            return Err(RegistryError::SubjectNotFound(subject.into()));
        }
        let live: Vec<&Version> = all.iter().copied().filter(|v| !v.deleted).collect();
        for v in &live {
            if !self.referenced_by(subject, v.version).is_empty() {
                return Err(RegistryError::ReferenceExists(subject.into(), v.version));
            }
        }
        if permanent {
            if !live.is_empty() {
                return Err(RegistryError::SubjectNotSoftDeleted(subject.into()));
            }
            let mut changes: Vec<Change> = all
                .iter()
                .map(|v| {
                    Change::Schema(Version {
                        forgotten: true,
                        ..(*v).clone()
                    })
                })
                .collect();
            if self.subject_config.contains_key(subject) {
                changes.push(Change::Config {
                    subject: Some(subject.into()),
                    level: None,
                });
            }
            if self.subject_mode.contains_key(subject) {
                changes.push(Change::Mode {
                    subject: Some(subject.into()),
                    mode: None,
                });
            }
            return Ok((all.iter().map(|v| v.version).collect(), changes));
        }
        if live.is_empty() {
            return Err(RegistryError::SubjectSoftDeleted(subject.into()));
        }
        Ok((
            live.iter().map(|v| v.version).collect(),
            live.iter()
                .map(|v| {
                    Change::Schema(Version {
                        deleted: true,
                        ..(*v).clone()
                    })
                })
                .collect(),
        ))
    }

    pub fn delete_version(
        &self,
        subject: &str,
        spec: VersionSpec,
        permanent: bool,
    ) -> Result<(u32, Change), RegistryError> {
        self.writable(subject)?;
        if self.live(subject, true).next().is_none() {
            return Err(RegistryError::SubjectNotFound(subject.into()));
        }
        // `latest` means the newest live version; a number may name a soft-deleted one.
        let v = match spec {
            VersionSpec::Latest => self.version(subject, spec, false)?,
            VersionSpec::Number(_) => self.version(subject, spec, true)?,
        };
        if permanent {
            if !v.deleted {
                return Err(RegistryError::VersionNotSoftDeleted(
                    subject.into(),
                    v.version,
                ));
            }
            return Ok((
                v.version,
                Change::Schema(Version {
                    forgotten: true,
                    ..v.clone()
                }),
            ));
        }
        if v.deleted {
            return Err(RegistryError::VersionSoftDeleted(subject.into(), v.version));
        }
        if !self.referenced_by(subject, v.version).is_empty() {
            return Err(RegistryError::ReferenceExists(subject.into(), v.version));
        }
        Ok((
            v.version,
            Change::Schema(Version {
                deleted: true,
                ..v.clone()
            }),
        ))
    }

    pub fn set_mode(
        &self,
        subject: Option<&str>,
        mode: Mode,
        force: bool,
    ) -> Result<Change, RegistryError> {
        if mode == Mode::Import && !force {
            let has = match subject {
                Some(s) => self.live(s, true).next().is_some(),
                None => !self.versions.is_empty(),
            };
            if has {
                return Err(RegistryError::NotPermitted(
                    "Cannot import since found existing subjects (use force=true)".into(),
                ));
            }
        }
        Ok(Change::Mode {
            subject: subject.map(str::to_owned),
            mode: Some(mode),
        })
    }

    /// Whether a subject has (or had, soft-deleted) versions.
    pub fn subject_exists(&self, subject: &str) -> bool {
        self.live(subject, true).next().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn avro(fields: &str) -> Registration {
        Registration {
            schema_type: SchemaType::Avro,
            schema: format!(r#"{{"type":"record","name":"R","fields":[{fields}]}}"#),
            references: vec![],
            id: None,
            version: None,
        }
    }

    fn register(
        s: &mut Subjects,
        subject: &str,
        r: Registration,
    ) -> Result<Version, RegistryError> {
        let out = s.register(subject, r)?;
        if let Some(c) = &out.change {
            s.apply(c);
        }
        Ok(out.version)
    }

    fn apply_all(s: &mut Subjects, changes: &[Change]) {
        for c in changes {
            s.apply(c);
        }
    }

    #[test]
    fn ids_are_global_and_reused_and_versions_dense() {
        let mut s = Subjects::default();
        let v1 = register(&mut s, "a-value", avro(r#"{"name":"x","type":"int"}"#)).unwrap();
        assert_eq!((v1.id, v1.version), (1, 1));
        // The same schema again, differently formatted: same id and version.
        let again = register(
            &mut s,
            "a-value",
            avro(r#"{ "name": "x",  "type": "int" }"#),
        )
        .unwrap();
        assert_eq!((again.id, again.version), (1, 1));
        // Under another subject: same id, version 1 there.
        let other = register(&mut s, "b-value", avro(r#"{"name":"x","type":"int"}"#)).unwrap();
        assert_eq!((other.id, other.version), (1, 1));
        let v2 = register(
            &mut s,
            "a-value",
            avro(r#"{"name":"x","type":"int"},{"name":"y","type":"int","default":0}"#),
        )
        .unwrap();
        assert_eq!((v2.id, v2.version), (2, 2));
        assert_eq!(s.versions("a-value", false).unwrap(), [1, 2]);
        assert_eq!(s.id_versions(1, false).unwrap().len(), 2);
    }

    #[test]
    fn incompatible_changes_are_refused_with_problems() {
        let mut s = Subjects::default();
        register(&mut s, "t-value", avro(r#"{"name":"x","type":"int"}"#)).unwrap();
        let err = register(
            &mut s,
            "t-value",
            avro(r#"{"name":"x","type":"int"},{"name":"y","type":"int"}"#),
        )
        .unwrap_err();
        assert_eq!(err.code(), 409);
        assert_eq!(err.status(), 409);
        assert!(
            err.to_string()
                .contains("READER_FIELD_MISSING_DEFAULT_VALUE"),
            "{err}"
        );
        // With NONE it goes in.
        s.apply(&Change::Config {
            subject: Some("t-value".into()),
            level: Some(Level::None),
        });
        register(
            &mut s,
            "t-value",
            avro(r#"{"name":"x","type":"int"},{"name":"y","type":"int"}"#),
        )
        .unwrap();
    }

    #[test]
    fn soft_then_permanent_deletion_follows_confluent_rules() {
        let mut s = Subjects::default();
        register(&mut s, "t", avro(r#"{"name":"x","type":"int"}"#)).unwrap();
        assert_eq!(
            s.delete_subject("t", true).unwrap_err().code(),
            40405,
            "permanent needs soft first"
        );
        let (versions, changes) = s.delete_subject("t", false).unwrap();
        assert_eq!(versions, [1]);
        apply_all(&mut s, &changes);
        assert_eq!(s.delete_subject("t", false).unwrap_err().code(), 40404);
        assert_eq!(s.versions("t", false).unwrap_err().code(), 40401);
        assert_eq!(s.versions("t", true).unwrap(), [1]);
        assert!(s.subjects(false, "").is_empty());
        assert_eq!(s.subjects(true, ""), ["t"]);
        let (_, changes) = s.delete_subject("t", true).unwrap();
        apply_all(&mut s, &changes);
        assert_eq!(s.versions("t", true).unwrap_err().code(), 40401);
        // The id is never given again.
        let next = register(&mut s, "t", avro(r#"{"name":"z","type":"long"}"#)).unwrap();
        assert_eq!(next.id, 2);
    }

    #[test]
    fn version_deletion() {
        let mut s = Subjects::default();
        s.apply(&Change::Config {
            subject: None,
            level: Some(Level::None),
        });
        register(&mut s, "t", avro(r#"{"name":"x","type":"int"}"#)).unwrap();
        register(&mut s, "t", avro(r#"{"name":"x","type":"long"}"#)).unwrap();
        assert_eq!(
            s.delete_version("t", VersionSpec::Number(2), true)
                .unwrap_err()
                .code(),
            40407
        );
        let (v, c) = s.delete_version("t", VersionSpec::Latest, false).unwrap();
        assert_eq!(v, 2);
        s.apply(&c);
        assert_eq!(
            s.delete_version("t", VersionSpec::Number(2), false)
                .unwrap_err()
                .code(),
            40406
        );
        assert_eq!(
            s.version("t", VersionSpec::Latest, false).unwrap().version,
            1
        );
        assert_eq!(
            s.version("t", VersionSpec::Number(9), false)
                .unwrap_err()
                .code(),
            40402
        );
        assert_eq!("0".parse::<VersionSpec>().unwrap_err().code(), 42202);
        assert_eq!("-1".parse::<VersionSpec>().unwrap(), VersionSpec::Latest);
    }

    #[test]
    fn references_resolve_and_guard_deletion() {
        let mut s = Subjects::default();
        let address = Registration {
            schema: r#"{"type":"record","name":"Address","namespace":"acme","fields":[{"name":"city","type":"string"}]}"#.into(),
            ..avro("")
        };
        register(&mut s, "address", address).unwrap();
        let customer = Registration {
            schema: r#"{"type":"record","name":"Customer","namespace":"acme","fields":[{"name":"home","type":"acme.Address"}]}"#.into(),
            references: vec![Reference {
                name: "acme.Address".into(),
                subject: "address".into(),
                version: 1,
            }],
            ..avro("")
        };
        let c = register(&mut s, "customer", customer.clone()).unwrap();
        assert_eq!(s.referenced_by("address", 1), [c.id]);
        assert_eq!(
            s.delete_subject("address", false).unwrap_err().code(),
            42206
        );
        let missing = Registration {
            references: vec![Reference {
                name: "acme.Address".into(),
                subject: "address".into(),
                version: 7,
            }],
            ..customer
        };
        assert_eq!(
            register(&mut s, "other", missing).unwrap_err().code(),
            42201
        );
    }

    #[test]
    fn modes_guard_writes_and_import_keeps_ids() {
        let mut s = Subjects::default();
        s.apply(&s.set_mode(None, Mode::Import, false).unwrap());
        let imported = register(
            &mut s,
            "t",
            Registration {
                id: Some(42),
                version: Some(3),
                ..avro(r#"{"name":"x","type":"int"}"#)
            },
        )
        .unwrap();
        assert_eq!((imported.id, imported.version), (42, 3));
        assert_eq!(
            s.set_mode(None, Mode::Import, false).unwrap_err().code(),
            42205
        );
        s.apply(&Change::Mode {
            subject: None,
            mode: Some(Mode::Readonly),
        });
        assert_eq!(
            register(&mut s, "t", avro(r#"{"name":"y","type":"int"}"#))
                .unwrap_err()
                .code(),
            42205
        );
        s.apply(&Change::Mode {
            subject: None,
            mode: Some(Mode::Readwrite),
        });
        let next = register(&mut s, "u", avro(r#"{"name":"y","type":"int"}"#)).unwrap();
        assert_eq!(next.id, 43);
    }

    #[test]
    fn config_defaults_and_subject_levels() {
        let mut s = Subjects::default();
        assert_eq!(s.config(None, false).unwrap(), Level::Backward);
        assert_eq!(s.config(Some("t"), false).unwrap_err().code(), 40408);
        assert_eq!(s.config(Some("t"), true).unwrap(), Level::Backward);
        s.apply(&Change::Config {
            subject: Some("t".into()),
            level: Some(Level::Full),
        });
        assert_eq!(s.level(Some("t")), Level::Full);
        assert_eq!(s.level(Some("u")), Level::Backward);
    }

    #[test]
    fn replaying_changes_rebuilds_the_same_state() {
        let mut s = Subjects::default();
        let mut log = vec![];
        for fields in [
            r#"{"name":"x","type":"int"}"#,
            r#"{"name":"x","type":"int"},{"name":"y","type":"int","default":0}"#,
        ] {
            let out = s.register("t", avro(fields)).unwrap();
            let c = out.change.unwrap();
            s.apply(&c);
            log.push(serde_json::to_string(&c).unwrap());
        }
        let mut replayed = Subjects::default();
        for line in &log {
            replayed.apply(&serde_json::from_str(line).unwrap());
        }
        assert_eq!(replayed.versions("t", false).unwrap(), [1, 2]);
        assert_eq!(
            replayed.by_id(2).unwrap().schema,
            s.by_id(2).unwrap().schema
        );
    }
}
