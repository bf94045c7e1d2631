//! The sandbox's allocator: Rust's global allocator, except that once an invocation's
//! deadline has passed, large allocations fail.
//!
//! QuickJS asks its interrupt handler only every 10,000 calls or backward jumps. A loop
//! whose every turn is a built-in copying a MiB, catching the out-of-memory errors it
//! provokes, ran ~7 s past a 5 s deadline before that count came round (finding Q8).
//! Past the deadline such a copy now fails at once, so the turns become cheap and the
//! interrupt arrives within milliseconds. Small allocations still succeed: the interrupt
//! itself, the error objects and the unwinding need them.

#![allow(unsafe_code)]

use std::cell::Cell;
use std::rc::Rc;
use std::time::Instant;

use rquickjs::allocator::{Allocator, RustAllocator};

/// Allocations of this many bytes or more fail past the deadline.
pub const LATE_LIMIT: usize = 16 * 1024;

pub struct DeadlineAllocator {
    /// The running invocation's deadline (shared with the interrupt handler).
    pub deadline: Rc<Cell<Option<Instant>>>,
}

impl DeadlineAllocator {
    fn refused(&self, size: usize) -> bool {
        size >= LATE_LIMIT && self.deadline.get().is_some_and(|d| Instant::now() >= d)
    }
}

// SAFETY: every allocation is RustAllocator's, or a null pointer (a failed allocation, as
// QuickJS expects from malloc); a refused realloc leaves the block untouched.
unsafe impl Allocator for DeadlineAllocator {
    fn alloc(&mut self, size: usize) -> *mut u8 {
        if self.refused(size) {
            return std::ptr::null_mut();
        }
        RustAllocator.alloc(size)
    }

    fn calloc(&mut self, count: usize, size: usize) -> *mut u8 {
        if self.refused(count.saturating_mul(size)) {
            return std::ptr::null_mut();
        }
        RustAllocator.calloc(count, size)
    }

    unsafe fn dealloc(&mut self, ptr: *mut u8) {
        // SAFETY: `ptr` came from RustAllocator (see the impl), as the caller promises.
        unsafe { RustAllocator.dealloc(ptr) }
    }

    unsafe fn realloc(&mut self, ptr: *mut u8, new_size: usize) -> *mut u8 {
        if self.refused(new_size) {
            return std::ptr::null_mut();
        }
        // SAFETY: `ptr` came from RustAllocator (see the impl), as the caller promises.
        unsafe { RustAllocator.realloc(ptr, new_size) }
    }

    unsafe fn usable_size(ptr: *mut u8) -> usize {
        // SAFETY: `ptr` came from RustAllocator (see the impl), as the caller promises.
        unsafe { RustAllocator::usable_size(ptr) }
    }
}
