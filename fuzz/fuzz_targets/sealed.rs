//! A sealed connection's receive path on arbitrary bytes, as someone on the
//! path could send them: the bytes arrive over loopback TCP at a connection
//! sealed as a server (keys from a fixed token and zero nonces, as the
//! seeds were sealed), which reads frames until it fails. Never a panic or
//! a hang; once a receive has failed, every later one fails too (nothing
//! after a refused frame is read); a frame that opens was sealed with the
//! key (the seeds), so a mutation that opens means a forged tag.
#![no_main]

use std::io::Write;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use shardlab_engine::net::{Connection, Frame};

const TOKEN: &[u8] = b"fuzz-token";
const PATIENCE: Duration = Duration::from_secs(5);

fn listener() -> &'static TcpListener {
    static L: OnceLock<TcpListener> = OnceLock::new();
    L.get_or_init(|| TcpListener::bind("127.0.0.1:0").expect("binds on loopback"))
}

fuzz_target!(|data: &[u8]| {
    let l = listener();
    let Ok(addr) = l.local_addr() else { return };
    let Ok(mut raw) = TcpStream::connect(addr) else { return };
    let Ok((stream, _)) = l.accept() else { return };
    let Ok(mut conn) = Connection::from_stream(stream, "fuzzer") else {
        return;
    };
    assert!(conn.seal_with_fixed_nonces(TOKEN, false));
    // Small inputs fit the socket buffer; write all, then end the stream.
    let _ = raw.write_all(&data[..data.len().min(64 * 1024)]);
    let _ = raw.shutdown(Shutdown::Write);
    let mut failed = false;
    for _ in 0..64 {
        match conn.recv_frame(PATIENCE) {
            Ok(frame) => {
                assert!(!failed, "a frame was read after a failed receive");
                assert!(!matches!(frame, Frame::Close), "close frames end the stream");
            }
            Err(_) if failed => break,
            Err(_) => failed = true,
        }
    }
    assert!(failed, "the stream ended, so a receive must fail");
});
