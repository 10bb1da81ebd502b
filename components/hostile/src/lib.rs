//! `hostile`: a transformer that misbehaves on purpose, for the containment tests.
//!
//! Its config names the behaviour: `ok` (passes events through), `loop` (never returns),
//! `alloc` (allocates without bound), `trap` (panics, which aborts: a trap), `huge-output`
//! (returns a 256 MiB event), `wrong-count` (returns one result too many), `slow` (spins for
//! `ms` milliseconds by the host clock, then passes through), `log-flood` (logs a million lines).

// The rules build natively for their unit tests; only the wasm build uses them all.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

#[cfg(target_arch = "wasm32")]
mod guest;
