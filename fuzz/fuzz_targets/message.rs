//! Control-message decoding: the JSON that arrives in control frames
//! (`cluster::messages::{ToNode, FromNode}`) and the binary tensor header at
//! the front of tensor frames (`net::tensor::TensorHeader`). Whatever decodes
//! must survive a serialize -> decode -> serialize round trip unchanged, and
//! a decoded tensor header must re-encode to the bytes it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::{de::DeserializeOwned, Serialize};
use shardlab_engine::cluster::messages::{FromNode, ToNode};
use shardlab_engine::net::frame::TensorHeader;

/// Decodes `data` as `T`; if it decodes, the re-serialized form is a fixed
/// point of decode + serialize.
fn round_trip<T: Serialize + DeserializeOwned>(data: &[u8]) {
    let Ok(msg) = serde_json::from_slice::<T>(data) else {
        return;
    };
    let Ok(once) = serde_json::to_vec(&msg) else {
        panic!("a decoded message does not serialize");
    };
    let back: T = match serde_json::from_slice(&once) {
        Ok(b) => b,
        Err(e) => panic!(
            "own output does not decode: {e}: {}",
            String::from_utf8_lossy(&once)
        ),
    };
    let Ok(twice) = serde_json::to_vec(&back) else {
        panic!("a re-decoded message does not serialize");
    };
    assert_eq!(
        String::from_utf8_lossy(&once),
        String::from_utf8_lossy(&twice),
        "round trip changed the message"
    );
}

fuzz_target!(|data: &[u8]| {
    round_trip::<ToNode>(data);
    round_trip::<FromNode>(data);
    if let Ok(Some((header, used))) = TensorHeader::parse(data) {
        assert!(used <= data.len());
        let mut again = Vec::new();
        header.encode(&mut again);
        assert_eq!(again, &data[..used], "tensor header re-encodes differently");
        assert_eq!(header.encoded_len(), used);
        // The data length is checked arithmetic, never an overflow panic.
        let _ = header.data_len();
        let _ = header.check_data_len((data.len() - used) as u64);
    }
});
