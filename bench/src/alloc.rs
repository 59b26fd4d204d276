//! A counting global allocator, for the memory figures.
//!
//! Counting is off by default: a shared atomic updated on every
//! allocation would bounce a cache line between the client, server and
//! bench threads and slow the throughput figures down. [`Window`] turns it
//! on for the span of one memory measurement; the live-byte delta over the
//! window is what that measurement allocated and still holds.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

/// The system allocator, plus a live-bytes counter while enabled.
pub struct Counting;

static ENABLED: AtomicBool = AtomicBool::new(false);
static LIVE: AtomicI64 = AtomicI64::new(0);

fn add(bytes: usize) {
    if ENABLED.load(Ordering::Relaxed) {
        LIVE.fetch_add(bytes as i64, Ordering::Relaxed);
    }
}

fn sub(bytes: usize) {
    if ENABLED.load(Ordering::Relaxed) {
        LIVE.fetch_sub(bytes as i64, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged; the counters never affect what is returned.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds `alloc`'s contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            add(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            add(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator (that is, from `System`)
        // with `layout`, as the caller guarantees.
        unsafe { System.dealloc(ptr, layout) };
        sub(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`; `new_size` is checked by the caller.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            sub(layout.size());
            add(new_size);
        }
        p
    }
}

/// A span during which allocations are counted; [`Window::live`] is the
/// net number of bytes allocated since it began (process-wide).
pub struct Window {
    start: i64,
}

impl Window {
    /// Starts counting.
    pub fn start() -> Window {
        ENABLED.store(true, Ordering::SeqCst);
        Window {
            start: LIVE.load(Ordering::SeqCst),
        }
    }

    /// Net bytes allocated (allocated minus freed) since the start.
    pub fn live(&self) -> i64 {
        LIVE.load(Ordering::SeqCst) - self.start
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        ENABLED.store(false, Ordering::SeqCst);
    }
}

/// Resident set size of this process in bytes, from `/proc/self/status`
/// (`None` where there is no procfs).
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// CPU time (user + system, all threads) this process has used, from
/// `/proc/self/stat`, in seconds (`None` where there is no procfs).
///
/// The server runs in this process too, so over a timed loop this is the
/// CPU the whole exchange cost, client and server together; divided by
/// the operations it tells CPU-bound loops from latency-bound ones.
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold
    // spaces): state is field 3, utime 14 and stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    // Linux reports these in USER_HZ, which is 100 on every mainstream
    // configuration.
    Some((utime + stime) / 100.0)
}
