//! Builds the guest workspace `components/` for `wasm32-wasip2` (release) and hands the
//! `.wasm` paths to `lib.rs`, which embeds them.
//!
//! The guest build uses its own target directory beside this build's (`…/target/<profile>/
//! wasm-components`) so it never waits on the host build's lock. The target is installed with
//! rustup when it is missing; `SLUICE_COMPONENTS_DIR` points at prebuilt `.wasm` files instead.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const COMPONENTS: [&str; 12] = [
    "validate",
    "enrich",
    "route",
    "redact-phi",
    "bronze-to-silver",
    "hostile",
    "webhook-gateway",
    "webhook-edge",
    "compactor",
    "hostile-compactor",
    "fhir-gateway",
    "fhir-edge",
];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest_dir
        .join("../..")
        .canonicalize()
        .expect("repository root");
    let components = root.join("components");
    println!("cargo:rerun-if-env-changed=SLUICE_COMPONENTS_DIR");
    for dir in ["components/Cargo.toml", "components/Cargo.lock", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    // Every crate of the guest workspace (not its target directory).
    for entry in std::fs::read_dir(&components).expect("components/ exists") {
        let entry = entry.expect("a directory entry");
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if entry.path().is_dir() && name != "target" && !name.starts_with('.') {
            println!("cargo:rerun-if-changed={}", entry.path().display());
        }
    }

    let wasm_dir = match env::var_os("SLUICE_COMPONENTS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => build(&components),
    };
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets it"));
    let mut consts = String::new();
    for c in COMPONENTS {
        let file = wasm_dir.join(format!("sluice_{}.wasm", c.replace('-', "_")));
        if !file.exists() {
            panic!("{} was not built", file.display());
        }
        consts.push_str(&format!(
            "pub const {}: &[u8] = include_bytes!({:?});\n",
            c.replace('-', "_").to_uppercase(),
            file.display().to_string()
        ));
    }
    std::fs::write(out.join("components.rs"), consts).expect("write components.rs");
}

fn build(components: &Path) -> PathBuf {
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets it"));
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out.
    let target_dir = out
        .ancestors()
        .nth(3)
        .expect("OUT_DIR has the usual shape")
        .join("wasm-components");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    ensure_target(&cargo);
    let status = Command::new(&cargo)
        .current_dir(components)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target_dir)
        // Flags meant for the host build must not leak into the guest build.
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CLIPPY_ARGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_MAKEFLAGS")
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .status()
        .expect("run cargo for the components");
    if !status.success() {
        panic!("building components/ for wasm32-wasip2 failed");
    }
    target_dir.join("wasm32-wasip2/release")
}

/// Install the wasm32-wasip2 target with rustup if the toolchain lacks it.
fn ensure_target(cargo: &str) {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let installed = sysroot.is_some_and(|s| s.join("lib/rustlib/wasm32-wasip2").exists());
    if installed {
        return;
    }
    let status = Command::new("rustup")
        .args(["target", "add", "wasm32-wasip2"])
        .status();
    match status {
        Ok(s) if s.success() => {}
        _ => panic!(
            "the wasm32-wasip2 target is missing and `rustup target add wasm32-wasip2` failed; \
             install it (cargo: {cargo})"
        ),
    }
}
