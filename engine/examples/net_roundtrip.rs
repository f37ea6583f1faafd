//! Loopback round trip of one tensor frame through `net::Connection`: the
//! client sends a tensor, an echo thread sends it back, repeat. Prints p50
//! and p99 per size, in microseconds, and the heap allocations per round
//! trip on both sides together (the tensor path should make none).
//!
//! cargo run -p shardlab-engine --example net_roundtrip [iterations-scale]

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use shardlab_engine::net::{Connection, NetError, TensorDtype, TensorHeader};

/// The system allocator, counting calls.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call unchanged to `System`, which upholds the
// `GlobalAlloc` contract; the counter has no effect on the memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` via `alloc` above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const DEADLINE: Duration = Duration::from_secs(10);

/// (label, bytes, iterations at scale 1)
const SIZES: [(&str, usize, usize); 3] = [
    ("1 KiB", 1 << 10, 20_000),
    ("64 KiB", 64 << 10, 5_000),
    ("1 MiB", 1 << 20, 1_000),
];

fn echo(mut conn: Connection) -> Result<(), NetError> {
    let mut buf = Vec::new();
    loop {
        let header = match conn.recv_tensor_into(Duration::from_secs(60), &mut buf) {
            Ok(h) => h,
            Err(NetError::Closed { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        conn.send_tensor(&header, &buf)?;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let scale: f64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1.0);
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server = thread::spawn(move || -> Result<(), NetError> {
        let (stream, _) = listener.accept().map_err(|source| NetError::Io {
            peer: "client".into(),
            op: "accept",
            source,
        })?;
        echo(Connection::from_stream(stream, "client")?)
    });
    let mut conn = Connection::connect(addr, "echo", DEADLINE)?;
    println!(
        "{:>8} {:>8} {:>10} {:>10} {:>12} {:>12}",
        "size", "iters", "p50 µs", "p99 µs", "MB/s @p50", "allocs/trip"
    );
    let mut back = Vec::new();
    for (label, bytes, iters) in SIZES {
        let iters = ((iters as f64 * scale) as usize).max(10);
        let data: Vec<u8> = (0..bytes).map(|i| i as u8).collect();
        let header = TensorHeader::new(TensorDtype::Bytes, &[bytes as u64], 1)?;
        for _ in 0..iters / 10 {
            conn.send_tensor(&header, &data)?;
            conn.recv_tensor_into(DEADLINE, &mut back)?;
        }
        let mut times = Vec::with_capacity(iters);
        let allocs_before = ALLOCATIONS.load(Ordering::Relaxed);
        for _ in 0..iters {
            let t = Instant::now();
            conn.send_tensor(&header, &data)?;
            conn.recv_tensor_into(DEADLINE, &mut back)?;
            times.push(t.elapsed());
        }
        let allocs = (ALLOCATIONS.load(Ordering::Relaxed) - allocs_before) as f64 / iters as f64;
        if back != data {
            return Err("echoed tensor differs from the one sent".into());
        }
        times.sort_unstable();
        let p50 = percentile(&times, 0.50);
        let p99 = percentile(&times, 0.99);
        // Both directions carry the tensor.
        let mbps = 2.0 * bytes as f64 / p50;
        println!("{label:>8} {iters:>8} {p50:>10.1} {p99:>10.1} {mbps:>12.0} {allocs:>12.2}");
    }
    drop(conn);
    match server.join() {
        Ok(result) => result?,
        Err(_) => return Err("echo thread panicked".into()),
    }
    Ok(())
}
