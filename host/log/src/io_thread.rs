//! The writer's own thread, for a log on a local directory.
//!
//! A local commit is a few short, blocking system calls (`pwrite` + `fdatasync` of the data,
//! the same for the commit record, a hard link and a directory sync). Sent to tokio's blocking
//! pool, each costs two thread hand-offs: the pool thread is woken, does the call and wakes the
//! task again. The disk serializes the syncs anyway, so nothing is gained by running them
//! side by side. On its own thread (with a single-threaded runtime) the writer and the
//! committer make these calls inline, one after the other, and only the callers' tasks are
//! woken, once per group.

use std::cell::Cell;
use std::future::Future;

thread_local! {
    static INLINE: Cell<bool> = const { Cell::new(false) };
}

/// Run a short blocking call: inline on the log's own thread, in tokio's blocking pool
/// anywhere else (recovery, readers, a log on an object store).
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    if on_log_thread() {
        f()
    } else {
        tokio::task::spawn_blocking(f).await.expect("blocking task")
    }
}

/// Whether this is the log's own thread, where blocking calls run inline.
pub(crate) fn on_log_thread() -> bool {
    INLINE.with(Cell::get)
}

/// Run `task` on a new thread named `sluice-log` with its own single-threaded runtime; the
/// returned receiver resolves once the task (and everything it spawned there) has finished.
pub(crate) fn spawn<F>(task: F) -> std::io::Result<tokio::sync::oneshot::Receiver<()>>
where
    F: Future<Output = ()> + Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (done, finished) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("sluice-log".into())
        .spawn(move || {
            INLINE.with(|i| i.set(true));
            runtime.block_on(task);
            // Blocking work it started (a spare commit log being zeroed) ends with the runtime.
            drop(runtime);
            let _ = done.send(());
        })?;
    Ok(finished)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_run_inline_only_on_the_log_thread() {
        let here = blocking(|| std::thread::current().id()).await;
        assert_ne!(here, std::thread::current().id(), "the blocking pool");
        let (tx, rx) = tokio::sync::oneshot::channel();
        let finished = spawn(async move {
            let outer = std::thread::current().id();
            let inner = blocking(|| std::thread::current().id()).await;
            let _ = tx.send((
                outer,
                inner,
                std::thread::current().name().map(str::to_owned),
            ));
        })
        .unwrap();
        let (outer, inner, name) = rx.await.unwrap();
        assert_eq!(outer, inner, "inline on the log thread");
        assert_eq!(name.as_deref(), Some("sluice-log"));
        finished.await.unwrap();
    }
}
