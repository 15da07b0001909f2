// SPDX-License-Identifier: MPL-2.0
//! Locks that a panic elsewhere cannot turn into a second panic.
//!
//! A media server runs thousands of calls in one process. If one call's
//! streaming thread panics while it holds a lock, `lock().unwrap()` would make
//! every later user of that lock panic too: a probe, a clock callback shared
//! by every call, and finally the process. The data a lock guards here is
//! always left consistent between statements that can panic, or the panic is
//! turned into a failed call by whoever catches it, so the guard is taken
//! back as it is.

use std::sync::{Condvar, Mutex, MutexGuard, WaitTimeoutResult};
use std::time::Duration;

/// Locks `mutex`, ignoring poisoning.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `Condvar::wait`, ignoring poisoning.
pub fn wait<'a, T>(cond: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    cond.wait(guard)
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `Condvar::wait_timeout`, ignoring poisoning.
pub fn wait_timeout<'a, T>(
    cond: &Condvar,
    guard: MutexGuard<'a, T>,
    timeout: Duration,
) -> (MutexGuard<'a, T>, WaitTimeoutResult) {
    cond.wait_timeout(guard, timeout)
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `Condvar::wait_timeout_while`, ignoring poisoning.
pub fn wait_timeout_while<'a, T>(
    cond: &Condvar,
    guard: MutexGuard<'a, T>,
    timeout: Duration,
    condition: impl FnMut(&mut T) -> bool,
) -> (MutexGuard<'a, T>, WaitTimeoutResult) {
    cond.wait_timeout_while(guard, timeout, condition)
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The body of a chain function, on the per-buffer path of an element that
/// may run thousands of times in a process. gst-rs's
/// `catch_panic_pad_function` looks the element's panic flag up by type on
/// every call, which measured about a tenth of a recording track's cost;
/// this only casts the parent. A panic still never unwinds into GStreamer:
/// it becomes an ERROR on the bus and `FlowError::Error` upstream.
pub fn chain_guarded<E, F>(
    parent: Option<&gst::Object>,
    f: F,
) -> Result<gst::FlowSuccess, gst::FlowError>
where
    E: gst::prelude::IsA<gst::Element> + gst::prelude::IsA<gst::Object>,
    F: FnOnce(&E) -> Result<gst::FlowSuccess, gst::FlowError>,
{
    use gst::prelude::*;
    let Some(element) = parent.and_then(|p| p.downcast_ref::<E>()) else {
        return Err(gst::FlowError::Flushing);
    };
    flow_guarded(element, f)
}

/// `chain_guarded` for a caller that has the element already: a chain
/// function called straight from another element of the same process.
pub fn flow_guarded<E, F>(element: &E, f: F) -> Result<gst::FlowSuccess, gst::FlowError>
where
    E: gst::prelude::IsA<gst::Element> + gst::prelude::IsA<gst::Object>,
    F: FnOnce(&E) -> Result<gst::FlowSuccess, gst::FlowError>,
{
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(element))) {
        Ok(flow) => flow,
        Err(panic) => {
            gst::element_error!(
                element,
                gst::CoreError::Failed,
                ("Internal error: {}", panic_text(&*panic)),
                ["a panic in the streaming path; this is a bug"]
            );
            Err(gst::FlowError::Error)
        }
    }
}

/// The text of a caught panic, for an error message.
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_poisoned_lock_is_still_usable() {
        let m = Arc::new(Mutex::new(1));
        let m2 = m.clone();
        let r = std::thread::spawn(move || {
            let _g = m2.lock().unwrap();
            panic!("boom");
        })
        .join();
        assert!(r.is_err());
        assert!(m.is_poisoned());
        *lock(&m) += 1;
        assert_eq!(*lock(&m), 2);
        let payload = std::panic::catch_unwind(|| panic!("named {}", 7)).unwrap_err();
        assert_eq!(panic_text(&*payload), "named 7");
    }

    #[test]
    fn a_panic_in_a_chain_function_is_an_error_not_an_unwind() {
        use gst::prelude::*;
        gst::init().unwrap();
        let element = gst::ElementFactory::make("identity").build().unwrap();
        let bus = gst::Bus::new();
        element.set_bus(Some(&bus));
        let parent = Some(element.upcast_ref::<gst::Object>());
        let ok = chain_guarded(parent, |_: &gst::Element| Ok(gst::FlowSuccess::Ok));
        assert_eq!(ok, Ok(gst::FlowSuccess::Ok));
        let flow = chain_guarded(parent, |_: &gst::Element| panic!("boom {}", 1));
        assert_eq!(flow, Err(gst::FlowError::Error));
        let msg = bus
            .pop_filtered(&[gst::MessageType::Error])
            .expect("an ERROR");
        let gst::MessageView::Error(err) = msg.view() else {
            unreachable!()
        };
        assert!(
            err.error().to_string().contains("boom 1"),
            "{}",
            err.error()
        );
        assert_eq!(
            chain_guarded(None, |_: &gst::Element| Ok(gst::FlowSuccess::Ok)),
            Err(gst::FlowError::Flushing)
        );
    }
}
