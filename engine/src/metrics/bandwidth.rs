//! Probes for the physical limits a measurement is judged against: memory
//! read bandwidth (the decode roofline) and a raw loopback TCP round trip
//! (the floor under every all-reduce).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Read bandwidth in bytes/s: sums a buffer of `bytes` (f32) `passes` times
/// on the calling thread, after one warm-up pass.
pub fn memory_read_bandwidth(bytes: usize, passes: usize) -> f64 {
    let n = (bytes / 4).max(1024);
    let data: Vec<f32> = (0..n).map(|i| (i % 7) as f32).collect();
    let mut sink = sum(&data);
    let started = Instant::now();
    for _ in 0..passes.max(1) {
        sink += sum(&data);
    }
    let secs = started.elapsed().as_secs_f64();
    std::hint::black_box(sink);
    (n * 4 * passes.max(1)) as f64 / secs
}

/// A buffer of `bytes` split evenly over `threads` threads, each summing
/// its own part: the read bandwidth of a group of cores (a node's cores).
pub struct BandwidthProbe {
    parts: Vec<Vec<f32>>,
}

impl BandwidthProbe {
    /// Allocates and touches the buffer (so page faults are not timed).
    pub fn new(bytes: usize, threads: usize) -> Self {
        let threads = threads.max(1);
        let per = (bytes / 4 / threads).max(1024);
        let parts = (0..threads)
            .map(|t| (0..per).map(|i| ((i + t) % 7) as f32).collect())
            .collect();
        Self { parts }
    }

    pub fn bytes(&self) -> usize {
        self.parts.iter().map(|p| p.len() * 4).sum()
    }

    /// Reads the whole buffer `passes` times, the parts in parallel; returns
    /// bytes/s over the wall time of all threads.
    pub fn measure(&self, passes: usize) -> f64 {
        let passes = passes.max(1);
        let started = Instant::now();
        let sink: f32 = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .parts
                .iter()
                .map(|part| s.spawn(move || (0..passes).map(|_| sum(part)).sum::<f32>()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0.0)).sum()
        });
        let secs = started.elapsed().as_secs_f64();
        std::hint::black_box(sink);
        (self.bytes() * passes) as f64 / secs
    }
}

/// Reads every value of `x` once. Four independent sums of eight lanes,
/// two cache lines an iteration, so the loop is bound by memory, not by
/// one add chain or its own overhead; with AVX2 each group is one 256-bit
/// load. A loop of one eight-lane group read a tenth less than this on one
/// core of the AMD host (15 against 17 GB/s), less than the decode kernels
/// themselves stream, so shares of "the bandwidth" came out over 100% and
/// the ideal cluster speedup too high (docs/ARCHITECTURE.md, "Bandwidth
/// probe").
fn sum(x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { sum_avx2(x) };
    }
    sum_portable(x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sum_avx2(x: &[f32]) -> f32 {
    sum_portable(x)
}

#[inline(always)]
fn sum_portable(x: &[f32]) -> f32 {
    let mut acc = [[0.0f32; 8]; 4];
    for chunk in x.chunks_exact(32) {
        for (group, values) in acc.iter_mut().zip(chunk.chunks_exact(8)) {
            for (a, v) in group.iter_mut().zip(values) {
                *a += v;
            }
        }
    }
    acc.iter().flatten().sum()
}

/// Round trips of `payload` bytes over loopback TCP (with TCP_NODELAY, as
/// the cluster's connections use), in seconds, `count` of them.
///
/// With `streamed` above zero each end first reads `streamed` bytes of a
/// buffer of its own, as a node reads its weights between two all-reduces:
/// the echo after each reply, the client once the echo is done and waiting,
/// then the client's round trip is timed. The network stack then runs with
/// the caches and TLB that a decode step leaves it, full of weights, which
/// on a VM can make a 32 KiB send cost the whole hot round trip.
pub fn loopback_round_trips(
    payload: usize,
    count: usize,
    streamed: usize,
) -> std::io::Result<Vec<f64>> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    // Raised by the echo once it has streamed and gone back to reading.
    let echo_waiting = Arc::new(AtomicBool::new(true));
    let echo_flag = Arc::clone(&echo_waiting);
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut buf = vec![0u8; payload];
        let weights = StreamedWeights::new(streamed);
        for _ in 0..count + 1 {
            s.read_exact(&mut buf)?;
            s.write_all(&buf)?;
            weights.read();
            echo_flag.store(true, Ordering::Release);
        }
        Ok(())
    });
    let mut c = TcpStream::connect(addr)?;
    c.set_nodelay(true)?;
    let out_buf = vec![1u8; payload];
    let mut in_buf = vec![0u8; payload];
    let weights = StreamedWeights::new(streamed);
    let mut times = Vec::with_capacity(count);
    for i in 0..count + 1 {
        if streamed > 0 {
            while !echo_waiting.swap(false, Ordering::Acquire) {
                if echo.is_finished() {
                    break;
                }
                // Yields rather than spins: on one core the echo must run.
                std::thread::yield_now();
            }
            weights.read();
        }
        let started = Instant::now();
        c.write_all(&out_buf)?;
        c.read_exact(&mut in_buf)?;
        if i > 0 {
            times.push(started.elapsed().as_secs_f64());
        }
    }
    echo.join()
        .map_err(|_| std::io::Error::other("echo thread panicked"))??;
    Ok(times)
}

/// A buffer standing in for a node's weights, read whole between round trips.
struct StreamedWeights(Vec<f32>);

impl StreamedWeights {
    fn new(bytes: usize) -> Self {
        Self((0..bytes / 4).map(|i| (i % 7) as f32).collect())
    }

    fn read(&self) {
        if !self.0.is_empty() {
            std::hint::black_box(sum(&self.0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_return_positive_figures() {
        assert!(memory_read_bandwidth(1 << 20, 2) > 0.0);
        let probe = BandwidthProbe::new(1 << 20, 2);
        assert_eq!(probe.bytes(), 1 << 20);
        assert!(probe.measure(2) > 0.0);
        let rtts = loopback_round_trips(1024, 5, 0).unwrap_or_default();
        assert_eq!(rtts.len(), 5);
        assert!(rtts.iter().all(|&t| t > 0.0));
        let after_streaming = loopback_round_trips(1024, 3, 1 << 20).unwrap_or_default();
        assert_eq!(after_streaming.len(), 3);
        assert!(after_streaming.iter().all(|&t| t > 0.0));
    }
}
