//! How the process's allocator (mimalloc, set in `main.rs`) hands freed memory back to
//! the operating system.
//!
//! mimalloc keeps freed pages for a while (its purge delay, 1 s by default) before it
//! returns them, so that a thread allocating again soon reuses them without a system
//! call. While serving that is what we want: a query's buffers are freed and asked for
//! again within milliseconds, and purging at once cost about a seventh more CPU per
//! answer. While a billing period is being read it is not: each file's raw batches are
//! freed as the next file's arrive, the delayed pages pile up, and a cold 10M-row load
//! peaked about 500 MiB higher (BENCHMARKS.md). [`EagerPurge`] therefore purges at once
//! for the length of a snapshot build only.
//!
//! The option is process-wide and builds are serialised by the catalog's refresh lock,
//! so at most one guard lives at a time. In a process whose global allocator is not
//! mimalloc (the tests embedding the server) the calls only set an option of an unused
//! allocator.

use std::{os::raw::c_long, sync::Mutex};

use libmimalloc_sys::{mi_collect, mi_option_get, mi_option_set, mi_option_t};

/// `mi_option_purge_delay` (milliseconds; 0 purges at once), position 15 of
/// `mi_option_e` in mimalloc 2 and 3 alike; the binding names no constant for it.
const PURGE_DELAY: mi_option_t = 15;

/// The guards alive and the delay to restore when the last one ends. Builds of one
/// catalog are serialised, but a process may hold several catalogs (tests do), and
/// guards that end out of order must not leave the delay at zero.
#[derive(Debug, Default)]
struct Guards {
    alive: usize,
    previous: c_long,
}

impl Guards {
    /// A guard starts while the delay is `current`: whether to set it to zero.
    fn enter(&mut self, current: impl FnOnce() -> c_long) -> bool {
        self.alive += 1;
        if self.alive == 1 {
            self.previous = current();
            true
        } else {
            false
        }
    }

    /// A guard ends: the delay to restore, when it was the last.
    fn leave(&mut self) -> Option<c_long> {
        self.alive = self.alive.saturating_sub(1);
        (self.alive == 0).then_some(self.previous)
    }
}

static GUARDS: Mutex<Guards> = Mutex::new(Guards {
    alive: 0,
    previous: 0,
});

fn guards<T>(f: impl FnOnce(&mut Guards) -> T) -> T {
    match GUARDS.lock() {
        Ok(mut g) => f(&mut g),
        Err(poisoned) => f(&mut poisoned.into_inner()),
    }
}

/// Freed memory goes back to the operating system at once while a guard lives; when
/// the last one ends, what mimalloc still holds free is collected and the previous
/// purge delay restored.
#[derive(Debug)]
pub struct EagerPurge(());

impl EagerPurge {
    /// Starts purging freed memory at once.
    pub fn start() -> Self {
        guards(|g| {
            // SAFETY: mimalloc's option calls take plain integers and are thread-safe.
            if g.enter(|| unsafe { mi_option_get(PURGE_DELAY) }) {
                unsafe { mi_option_set(PURGE_DELAY, 0) };
            }
        });
        Self(())
    }
}

impl Drop for EagerPurge {
    fn drop(&mut self) {
        guards(|g| {
            if let Some(previous) = g.leave() {
                // SAFETY: as above; `mi_collect` only releases memory mimalloc holds free.
                unsafe {
                    mi_collect(false);
                    mi_option_set(PURGE_DELAY, previous);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_guard_saves_the_delay_and_the_last_restores_it() {
        let mut g = Guards::default();
        assert!(g.enter(|| 1000));
        assert!(!g.enter(|| panic!("read again while a guard lives")));
        assert_eq!(g.leave(), None, "one guard is still alive");
        assert_eq!(g.leave(), Some(1000));
        assert!(g.enter(|| 250));
        assert_eq!(g.leave(), Some(250));
    }
}
