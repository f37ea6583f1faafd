//! What one loopback `send` of an all-reduce payload costs with the caches
//! a decode step leaves: the sender first reads MIB MiB of a buffer of its
//! own (as a node reads its weights between two all-reduces), then one
//! `write_all` of the payload is timed; an echo thread sends it back. No
//! shardlab code is on the path, only `std::net`, so what this shows is
//! the host's network stack running cold.
//!
//! `cargo run --release -p shardlab-engine --example send_after_streaming [PAYLOAD_BYTES] [ROUNDS] [MIB...]`
//! (defaults: 32792 bytes, the 8b's f64 partial and its frame header; 300
//! rounds; 0 4 16 64 256 MiB). Prints the p10, p50 and p90 of the send
//! alone and of the whole round trip, per MiB read.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

fn main() -> std::io::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("sizes and counts are whole numbers"))
        .collect();
    let payload = args.first().copied().unwrap_or(32792);
    let rounds = args.get(1).copied().unwrap_or(300).max(10);
    let mibs = if args.len() > 2 {
        args[2..].to_vec()
    } else {
        vec![0, 4, 16, 64, 256]
    };
    println!("payload {payload} bytes, {rounds} rounds each");
    for mib in mibs {
        let (send, round_trip) = measure(payload, rounds, mib << 20)?;
        println!(
            "after reading {mib:>4} MiB: send p10/p50/p90 {} µs; round trip {} µs",
            percentiles(send),
            percentiles(round_trip)
        );
    }
    Ok(())
}

/// Seconds of each timed send and each whole round trip.
fn measure(
    payload: usize,
    rounds: usize,
    streamed: usize,
) -> std::io::Result<(Vec<f64>, Vec<f64>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut buf = vec![0u8; payload];
        for _ in 0..rounds {
            s.read_exact(&mut buf)?;
            s.write_all(&buf)?;
        }
        Ok(())
    });
    let mut c = TcpStream::connect(addr)?;
    c.set_nodelay(true)?;
    let weights: Vec<f32> = (0..streamed / 4).map(|i| (i % 7) as f32).collect();
    let out = vec![1u8; payload];
    let mut back = vec![0u8; payload];
    let (mut send, mut round_trip) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        std::hint::black_box(read(&weights));
        let started = Instant::now();
        c.write_all(&out)?;
        let sent = started.elapsed().as_secs_f64();
        c.read_exact(&mut back)?;
        send.push(sent);
        round_trip.push(started.elapsed().as_secs_f64());
    }
    echo.join()
        .map_err(|_| std::io::Error::other("echo thread panicked"))??;
    Ok((send, round_trip))
}

/// Reads every value, eight running sums so memory, not one add chain, is
/// the limit.
fn read(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    for chunk in x.chunks_exact(8) {
        for (a, v) in acc.iter_mut().zip(chunk) {
            *a += v;
        }
    }
    acc.iter().sum()
}

/// "p10 / p50 / p90" in microseconds.
fn percentiles(mut seconds: Vec<f64>) -> String {
    seconds.sort_by(f64::total_cmp);
    let at = |q: f64| seconds[((seconds.len() - 1) as f64 * q) as usize] * 1e6;
    format!("{:.1} / {:.1} / {:.1}", at(0.1), at(0.5), at(0.9))
}
