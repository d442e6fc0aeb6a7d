//! Handing back the memory freed while an export is read.
//!
//! Reading an export parses `masks.safetensors`' header (one entry per task and parameter) and
//! the task set in the ONNX metadata: thousands of small allocations made between the masks
//! that stay. Once they are freed, glibc keeps the holes between the kept masks mapped, so the
//! server's resident memory stayed about 4 KB per task above the masks' packed bits (1,000
//! LeNet-5 tasks: 21.6 MB resident, 18.3 MB after a trim; `bench/serve/run.sh`). The goal of a
//! task costing `params / 8` bytes needs those pages back: `malloc_trim(0)` returns every free
//! page of glibc's heap to the system.

/// Returns the free pages of the allocator's heap to the system (glibc on Linux; elsewhere
/// nothing to do).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn release_freed() {
    unsafe extern "C" {
        fn malloc_trim(pad: usize) -> std::os::raw::c_int;
    }
    // SAFETY: malloc_trim takes no pointer and only walks glibc's own free lists; it is
    // thread-safe (it takes each arena's lock).
    unsafe {
        malloc_trim(0);
    }
}

/// Returns the free pages of the allocator's heap to the system (glibc on Linux; elsewhere
/// nothing to do).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_freed() {}
