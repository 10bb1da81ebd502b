//! The specification's R5 examples beside the repository (`../shared/fixtures/fhir/r5`), for
//! the tests. They are always there in CI; elsewhere a test without them checks nothing.

use serde_json::Value;

/// The example `name`, or `None` (outside CI) when the fixtures are not there.
pub fn r5(name: &str) -> Option<Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/fhir/r5")
        .join(name);
    match std::fs::read_to_string(&path) {
        Ok(t) => Some(serde_json::from_str(&t).expect("the fixture is JSON")),
        Err(_) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{} is missing",
                path.display()
            );
            None
        }
    }
}
