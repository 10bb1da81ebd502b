//! Compiled components on disk: `<dir>/<sha256 of the wasm>-<engine hash>.cwasm`, so a
//! restart loads machine code instead of compiling again, and an engine upgrade (or different
//! settings) never loads code compiled for another.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The content hash that names a component everywhere (cache files, versions).
pub fn content_hash(wasm: &[u8]) -> String {
    let digest = Sha256::digest(wasm);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn engine_hash(engine: &Engine) -> String {
    let mut h = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    format!("{:016x}", h.finish())
}

pub fn path(dir: &Path, hash: &str, engine_hash: &str) -> PathBuf {
    dir.join(format!("{hash}-{engine_hash}.cwasm"))
}

/// Load a component compiled earlier by this cache, if it is there and still loads.
#[allow(unsafe_code)]
pub fn load(engine: &Engine, file: &Path) -> Option<Component> {
    if !file.exists() {
        return None;
    }
    // SAFETY: `deserialize_file` trusts the file to be machine code that Wasmtime produced.
    // Only `store` below writes into the cache directory, inside the gateway's own data
    // directory, and Wasmtime still checks the version and settings it was compiled with.
    match unsafe { Component::deserialize_file(engine, file) } {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(file = %file.display(), "ignoring a cached component that does not load: {e:#}");
            None
        }
    }
}

/// Keep a compiled component; written to a temporary name and renamed, so a crash never
/// leaves a torn file under the real name.
pub fn store(component: &Component, file: &Path) {
    let result = (|| -> Result<(), String> {
        let bytes = component.serialize().map_err(|e| e.to_string())?;
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        static UNIQUE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = UNIQUE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = file.with_extension(format!("tmp{}-{n}", std::process::id()));
        std::fs::write(&tmp, bytes).map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, file).map_err(|e| e.to_string())
    })();
    if let Err(e) = result {
        tracing::warn!(file = %file.display(), "could not cache a compiled component: {e}");
    }
}
