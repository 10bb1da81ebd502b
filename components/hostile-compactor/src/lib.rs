//! `hostile-compactor`: a compaction policy that misbehaves on purpose, for the containment
//! tests (a tenant's compactor must not be able to corrupt its topic). Its config names the
//! behaviour: `loop` (never returns), `trap` (panics), `short` (one answer too few for each
//! key), `extra-group` (one group too many), `drop-all` (keeps nothing: allowed, and the
//! tests check it is what happens).

#[cfg(target_arch = "wasm32")]
mod guest {
    use std::cell::RefCell;

    wit_bindgen::generate!({ world: "compaction-policy", path: "../../wit" });

    use exports::sluice::gateway::compactor::{CompactionContext, Guest, KeyGroup};

    thread_local! {
        static BEHAVIOUR: RefCell<String> = const { RefCell::new(String::new()) };
    }

    struct Hostile;

    impl Guest for Hostile {
        fn init(config: String) -> Result<(), String> {
            let v: serde_json::Value = serde_json::from_str(&config).map_err(|e| e.to_string())?;
            let b = v["behaviour"].as_str().ok_or("`behaviour` is required")?;
            BEHAVIOUR.with(|s| *s.borrow_mut() = b.to_owned());
            Ok(())
        }

        fn select(_ctx: CompactionContext, groups: Vec<KeyGroup>) -> Vec<Vec<bool>> {
            let behaviour = BEHAVIOUR.with(|s| s.borrow().clone());
            match behaviour.as_str() {
                "loop" => {
                    let mut n: u64 = 0;
                    loop {
                        n = std::hint::black_box(n.wrapping_add(1));
                    }
                }
                "trap" => panic!("hostile compactor panics on purpose"),
                "short" => groups
                    .iter()
                    .map(|g| vec![true; g.records.len().saturating_sub(1)])
                    .collect(),
                "extra-group" => {
                    let mut out: Vec<Vec<bool>> =
                        groups.iter().map(|g| vec![true; g.records.len()]).collect();
                    out.push(vec![true]);
                    out
                }
                _ => groups
                    .iter()
                    .map(|g| vec![false; g.records.len()])
                    .collect(),
            }
        }
    }

    export!(Hostile);
}
