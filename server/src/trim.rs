//! Giving freed heap memory back to the system (docs/security.md, item 8).
//!
//! glibc's malloc keeps the pages of freed chunks in its arenas: after a
//! burst of thousands of connections or parked HTTP requests the buffers
//! are freed, but RSS stays where the burst left it (measured 6.4x the
//! unattacked baseline a minute later, `bench/rss_burst.py`). `malloc_trim`
//! returns those pages; the server calls it every `--trim-interval`
//! seconds on a blocking thread. This lives in the server binary, not in
//! core (core reads no clock and runs no task) nor in the adapters (an
//! embedding application picks its own allocator policy).

use std::time::Duration;

/// Returns the free pages of the heap to the system (glibc
/// `malloc_trim(0)`); `true` when some were released. A no-op (`false`)
/// where the allocator is not glibc's.
pub fn release_free_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes no pointer, works on the allocator's
        // own free lists under its arena locks, and may be called from any
        // thread at any time (glibc malloc_trim(3)).
        #[allow(unsafe_code)]
        let released = unsafe { libc::malloc_trim(0) };
        released != 0
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Calls [`release_free_memory`] every `every`, on tokio's blocking pool
/// (a trim walks the arenas: ~milliseconds, kept off the workers), until
/// the runtime stops.
pub async fn run(every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let _ = tokio::task::spawn_blocking(release_free_memory).await;
    }
}
