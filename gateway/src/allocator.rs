//! The allocator's settings: `okpay` (and the benches, to measure what it
//! runs) use mimalloc, told here to keep the memory it frees.

/// Tells mimalloc to keep the memory it frees instead of handing it back to the
/// OS after 10 ms (its `purge_delay`): with transparent huge pages every purged
/// page comes back as a freshly zeroed 2 MiB page, a sixth of the engine's CPU
/// under load (`perf`: `clear_page_erms` under `mi_page_fresh_alloc`).
#[allow(unsafe_code)] // one FFI call with two integers
pub fn keep_freed_memory() {
    // An operator's `MIMALLOC_PURGE_DELAY` (mimalloc reads it itself) wins.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // 15 is `mi_option_purge_delay` in mimalloc 2 and 3 (the sys crate names no
    // constant for it); -1 means never purge.
    unsafe { libmimalloc_sys::mi_option_set(15, -1) }
}
