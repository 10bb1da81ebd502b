//! The WIT bindings: the guest side of the boundary.

use std::cell::RefCell;

wit_bindgen::generate!({ world: "transformer", path: "../../wit" });

use exports::sluice::gateway::transform::{Guest, Output};
use sluice::gateway::types::{BatchContext, Event, Rejection};
use sluice::gateway::{clock, logging};

thread_local! {
    static BEHAVIOUR: RefCell<(String, i64)> = const { RefCell::new((String::new(), 0)) };
}

struct Hostile;

fn pass(events: Vec<Event>) -> Vec<Result<Vec<Output>, Rejection>> {
    events
        .into_iter()
        .map(|event| Ok(vec![Output { topic: None, event }]))
        .collect()
}

impl Guest for Hostile {
    fn init(config: String) -> Result<(), String> {
        let v: serde_json::Value = serde_json::from_str(&config).map_err(|e| e.to_string())?;
        let b = v["behaviour"]
            .as_str()
            .ok_or("`behaviour` is required")?
            .to_owned();
        let ms = v["ms"].as_i64().unwrap_or(0);
        BEHAVIOUR.with(|s| *s.borrow_mut() = (b, ms));
        Ok(())
    }

    fn transform(_ctx: BatchContext, events: Vec<Event>) -> Vec<Result<Vec<Output>, Rejection>> {
        let (behaviour, ms) = BEHAVIOUR.with(|s| s.borrow().clone());
        match behaviour.as_str() {
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "trap" => panic!("hostile guest panics on purpose"),
            "huge-output" => {
                let mut out = pass(events);
                if let Some(Ok(outputs)) = out.first_mut() {
                    outputs[0].event.data = vec![b'x'; 256 << 20];
                }
                out
            }
            "wrong-count" => {
                let mut out = pass(events);
                out.push(Ok(Vec::new()));
                out
            }
            "slow" => {
                let until = clock::now() + ms;
                while clock::now() < until {
                    std::hint::spin_loop();
                }
                pass(events)
            }
            "sleep" => {
                // Blocks in the host (wasi:clocks + wasi:io/poll), not in its own code.
                let ms = if ms > 0 { ms as u64 } else { 60_000 };
                std::thread::sleep(std::time::Duration::from_millis(ms));
                pass(events)
            }
            "log-flood" => {
                for i in 0..1_000_000 {
                    logging::log(logging::Level::Info, &format!("flood line {i}"));
                }
                pass(events)
            }
            _ => pass(events),
        }
    }
}

export!(Hostile);
