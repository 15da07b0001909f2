// SPDX-License-Identifier: MPL-2.0
//! The WebSocket runtime: one tokio worker for every connection of the
//! process; it reads and writes sockets and runs timers, and never pushes
//! downstream.

use std::sync::LazyLock;
use std::time::Duration;

/// Runs `f` on the WebSocket runtime's thread after `after`.
pub fn spawn_after(
    after: Duration,
    f: impl FnOnce() + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    spawn(async move {
        tokio::time::sleep(after).await;
        f()
    })
}

/// Runs `task` on the WebSocket runtime.
pub fn spawn(
    task: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    RUNTIME.spawn(task)
}

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .on_thread_park(crate::nap::before_sleep)
        .on_thread_unpark(crate::nap::after_sleep)
        .thread_name("pipecat-ws")
        .enable_all()
        .build()
        .expect("starting the WebSocket runtime")
});
