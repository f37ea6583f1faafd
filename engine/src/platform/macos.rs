//! macOS: Mach task and host statistics for memory, `sysctl` for the
//! machine's size, `gethostname`. macOS has no hard CPU affinity (its
//! affinity tags are only hints to the scheduler), so pinning is refused.

use std::ffi::OsStr;
use std::mem::{size_of, MaybeUninit};
use std::process::Command;

/// The task's `resident_size` (MACH_TASK_BASIC_INFO).
pub(super) fn current_rss_bytes() -> Option<u64> {
    let mut info = MaybeUninit::<libc::mach_task_basic_info>::zeroed();
    let mut count = libc::MACH_TASK_BASIC_INFO_COUNT;
    // SAFETY: `info` has room for MACH_TASK_BASIC_INFO_COUNT words, the
    // count the call is given; the kernel writes at most that many.
    // `mach_task_self` is deprecated in libc in favour of the mach2 crate;
    // the call itself is the stable Mach one.
    #[allow(deprecated)]
    let kr = unsafe {
        libc::task_info(
            libc::mach_task_self(),
            libc::MACH_TASK_BASIC_INFO,
            info.as_mut_ptr() as libc::task_info_t,
            &mut count,
        )
    };
    if kr != libc::KERN_SUCCESS {
        return None;
    }
    // SAFETY: the call succeeded and filled the struct (zeroed before).
    let info = unsafe { info.assume_init() };
    Some(info.resident_size)
}

/// `ru_maxrss` from `getrusage`, which macOS gives in bytes (Linux in KiB).
pub(super) fn peak_rss_bytes() -> Option<u64> {
    let mut usage = MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` is a valid out pointer for one rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: getrusage succeeded and filled it.
    let max = unsafe { usage.assume_init() }.ru_maxrss;
    u64::try_from(max).ok()
}

/// `hw.memsize`, and as available the free, inactive, purgeable and
/// speculative pages (what the kernel can hand out without swapping, the
/// closest match to Linux's MemAvailable).
pub(super) fn system_memory_bytes() -> Option<(u64, u64)> {
    let total = sysctl_u64(c"hw.memsize")?;
    let mut stats = MaybeUninit::<libc::vm_statistics64>::zeroed();
    let mut count = libc::HOST_VM_INFO64_COUNT;
    // SAFETY: `stats` has room for HOST_VM_INFO64_COUNT words, the count the
    // call is given; an older kernel fills fewer and says so in `count`.
    #[allow(deprecated)]
    let kr = unsafe {
        libc::host_statistics64(
            libc::mach_host_self(),
            libc::HOST_VM_INFO64,
            stats.as_mut_ptr() as libc::host_info64_t,
            &mut count,
        )
    };
    if kr != libc::KERN_SUCCESS {
        return None;
    }
    // SAFETY: the call succeeded; fields it did not fill stay zero.
    let s = unsafe { stats.assume_init() };
    let pages = s.free_count as u64
        + s.inactive_count as u64
        + s.purgeable_count as u64
        + s.speculative_count as u64;
    let page = sysctl_u64(c"hw.pagesize")?;
    Some((total, (pages * page).min(total)))
}

/// A numeric sysctl of 4 or 8 bytes.
fn sysctl_u64(name: &std::ffi::CStr) -> Option<u64> {
    let mut value = 0u64;
    let mut len = size_of::<u64>();
    // SAFETY: `value` is writable for `len` bytes, and the kernel writes at
    // most `len`, reporting how many in `len`.
    let rc = unsafe {
        libc::sysctlbyname(
            name.as_ptr(),
            (&mut value as *mut u64).cast(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    match (rc, len) {
        (0, 8) => Some(value),
        (0, 4) => Some(value & 0xffff_ffff),
        _ => None,
    }
}

pub(super) fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is writable for its length; the name is NUL-terminated
    // when it fits, and the last byte is kept for the terminator.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) } != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0)?;
    Some(String::from_utf8_lossy(&buf[..end]).into_owned())
}

pub(super) fn pinned_command(_exe: &OsStr, _first: usize, _last: usize) -> Result<Command, String> {
    Err(
        "core pinning is not available on macOS: it has no hard CPU affinity \
         (run without pinning; the scheduler places threads itself)"
            .into(),
    )
}
