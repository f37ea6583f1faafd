//! A cache hint: asking for memory to be brought in ahead of its use, for
//! reads the hardware prefetchers do not follow far enough ahead (rows of
//! one KV head, strided through the cache).

/// Whether the one-token kernels ask for a weight's next bytes ahead of
/// use (`avx2_interleaved.rs`). On an Intel host the hardware prefetcher
/// alone left Q4_K's kernel at 9.5 of the 12.2 GB/s a core streams, and
/// asking ahead took the 8b decode from 0.90x to 1.12x llama.cpp. On an
/// AMD Zen 4 host the hints cost: its prefetcher streams these weights
/// alone, and one core read 28-32 GB/s from memory without them against
/// 22-27 with them (`kernel_speed`, Q4_0, Q4_K, Q8_0; docs/ARCHITECTURE.md,
/// "Weights asked for ahead"). So: not on AMD, elsewhere yes.
#[cfg(target_arch = "x86_64")]
pub(crate) fn weights_asked_ahead() -> bool {
    static ASK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ASK.get_or_init(|| {
        // The vendor string is EBX, EDX, ECX of leaf 0, four bytes each.
        let id = std::arch::x86_64::__cpuid(0);
        let word = |b: &[u8; 4]| u32::from_le_bytes(*b);
        [id.ebx, id.edx, id.ecx] != [word(b"Auth"), word(b"enti"), word(b"cAMD")]
    })
}

/// Hints the `bytes` bytes from `start` on, a line at a time, with no
/// bounds check: a hint cannot fault, so one past the end of a buffer is
/// harmless. For the kernels' inner loops, where [`prefetch`]'s check and
/// alignment cost about a fifth of an in-cache one-token kernel.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn prefetch_run(start: *const u8, bytes: usize) {
    let mut offset = 0;
    while offset < bytes {
        line(start.wrapping_add(offset));
        offset += 64;
    }
}

/// Hints that `values[at..at + len]` will be read soon; nothing when `at`
/// is past the end. Only a hint: it reads nothing and cannot fault.
#[inline(always)]
pub(crate) fn prefetch<T>(values: &[T], at: usize, len: usize) {
    each_line(values, at, len, line)
}

/// As [`prefetch`], into L2 only: for a run read a while later, whose
/// lines in L1 would only push out what is being read now. (The x86
/// batch kernels are its only readers.)
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn prefetch_to_l2<T>(values: &[T], at: usize, len: usize) {
    each_line(values, at, len, line_to_l2)
}

/// `hint` once for every cache line `values[at..at + len]` touches;
/// nothing when `at` is past the end.
#[inline(always)]
fn each_line<T>(values: &[T], at: usize, len: usize, hint: fn(*const u8)) {
    if at >= values.len() || len == 0 {
        return;
    }
    let start = values[at..].as_ptr() as *const u8;
    let bytes = len.min(values.len() - at) * std::mem::size_of::<T>();
    // One hint per cache line the run touches, the first one included
    // from its start (a plain loop: an iterator chain here cost a tenth of
    // an attention step).
    let skip = start as usize % 64;
    let mut offset = 0;
    while offset < skip + bytes {
        hint(start.wrapping_add(offset).wrapping_sub(skip));
        offset += 64;
    }
}

/// The hint for the line holding `p`.
#[inline(always)]
fn line(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint that touches no memory; SSE is part of
    // x86-64.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(p as *const i8);
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: PRFM is a hint that touches no memory and cannot fault.
    unsafe {
        std::arch::asm!("prfm pldl1keep, [{0}]", in(reg) p, options(nostack, readonly, preserves_flags));
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let _ = p;
}

/// The hint for the line holding `p`, into L2.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn line_to_l2(p: *const u8) {
    // SAFETY: as `line`.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
        _mm_prefetch::<_MM_HINT_T1>(p as *const i8);
    }
}
