//! `spin.toml` (manifest version 2): the parts the edge runner needs.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("spin.toml: {0}")]
    Parse(String),
    #[error("spin.toml: no component `{0}`")]
    NoComponent(String),
    #[error("spin.toml: the application variable `{0}` is required and not given")]
    Required(String),
    #[error("spin.toml: `{0}` names no application variable")]
    Unknown(String),
}

#[derive(Debug, Deserialize)]
pub struct Manifest {
    pub spin_manifest_version: u32,
    pub application: Application,
    #[serde(default)]
    pub variables: BTreeMap<String, Variable>,
    #[serde(default)]
    pub trigger: Triggers,
    #[serde(default)]
    pub component: BTreeMap<String, ComponentSpec>,
}

#[derive(Debug, Deserialize)]
pub struct Application {
    pub name: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct Variable {
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub secret: bool,
}

#[derive(Debug, Default, Deserialize)]
pub struct Triggers {
    #[serde(default)]
    pub http: Vec<HttpTrigger>,
}

#[derive(Debug, Deserialize)]
pub struct HttpTrigger {
    pub route: String,
    pub component: String,
}

#[derive(Debug, Deserialize)]
pub struct ComponentSpec {
    pub source: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    #[serde(default)]
    pub build: Option<Build>,
}

#[derive(Debug, Deserialize)]
pub struct Build {
    pub command: String,
    #[serde(default)]
    pub workdir: Option<String>,
}

/// Fill `{{ name }}` templates from application variables.
pub fn fill(template: &str, vars: &HashMap<String, String>) -> Result<String, ManifestError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find("}}")
            .map(|e| start + e)
            .ok_or_else(|| ManifestError::Parse(format!("an open `{{{{` in `{template}`")))?;
        let name = rest[start + 2..end].trim();
        out.push_str(
            vars.get(name)
                .ok_or_else(|| ManifestError::Unknown(name.to_owned()))?,
        );
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

impl Manifest {
    pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
        let m: Manifest = toml::from_str(text).map_err(|e| ManifestError::Parse(e.to_string()))?;
        if m.spin_manifest_version != 2 {
            return Err(ManifestError::Parse(format!(
                "spin_manifest_version {}; this runner reads version 2",
                m.spin_manifest_version
            )));
        }
        for t in &m.trigger.http {
            if !m.component.contains_key(&t.component) {
                return Err(ManifestError::NoComponent(t.component.clone()));
            }
        }
        Ok(m)
    }

    pub fn component(&self, id: &str) -> Result<&ComponentSpec, ManifestError> {
        self.component
            .get(id)
            .ok_or_else(|| ManifestError::NoComponent(id.to_owned()))
    }

    /// The application variables: those `given`, else their defaults; a required one missing
    /// is an error.
    pub fn application_variables(
        &self,
        given: &HashMap<String, String>,
    ) -> Result<HashMap<String, String>, ManifestError> {
        let mut out = HashMap::new();
        for (name, spec) in &self.variables {
            match given.get(name).cloned().or_else(|| spec.default.clone()) {
                Some(v) => {
                    out.insert(name.clone(), v);
                }
                None if spec.required => return Err(ManifestError::Required(name.clone())),
                None => {}
            }
        }
        if let Some(name) = given.keys().find(|k| !self.variables.contains_key(*k)) {
            return Err(ManifestError::Unknown(name.clone()));
        }
        Ok(out)
    }

    /// Component `id`'s variables, templates filled.
    pub fn resolve_variables(
        &self,
        id: &str,
        given: &HashMap<String, String>,
    ) -> Result<HashMap<String, String>, ManifestError> {
        let app = self.application_variables(given)?;
        self.component(id)?
            .variables
            .iter()
            .map(|(k, t)| Ok((k.clone(), fill(t, &app)?)))
            .collect()
    }
}
