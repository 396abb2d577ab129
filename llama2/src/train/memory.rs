//! The allocator setting training runs with: memory freed between steps is
//! kept for the next step instead of going back to the operating system.
//!
//! A training step frees and allocates the same large buffers every time
//! (activations, the logits and their gradient, the optimizer's new moments).
//! glibc's `malloc` serves blocks of 32 MiB and more with `mmap` and unmaps
//! them on `free`, and trims the heap's free top, so the next step faults
//! every page in again and the kernel zeroes it: about a quarter of a 15M
//! training step and a tenth of a 110M one on a 2-core machine
//! (BENCHMARKS.md). [`keep_freed_memory`] turns both off for the process.

/// Makes glibc's `malloc` serve every block from its heaps (no `mmap` per
/// block) and keep freed memory (no trimming below 2 GiB of free top), so
/// that steady-state training faults no pages in. The process's peak memory
/// is what it was; what it holds between peaks stays mapped.
///
/// Process-wide and idempotent; the training examples call it first thing.
/// Returns whether the setting was applied (only glibc on Linux has it).
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `mallopt` only changes allocator parameters; it is safe to call at
        // any time, from any thread.
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, 0) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_takes_the_setting() {
        assert!(super::keep_freed_memory());
        assert!(super::keep_freed_memory(), "idempotent");
    }
}
