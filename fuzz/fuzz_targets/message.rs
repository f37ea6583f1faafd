//! Control-message decoding: the JSON that arrives in control frames
//! (`cluster::messages::{ToNode, FromNode}`) and the binary tensor header at
//! the front of tensor frames (`net::tensor::TensorHeader`). Whatever decodes
//! must survive a serialize -> decode -> serialize round trip unchanged, and
//! a decoded tensor header must re-encode to the bytes it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;
use shardlab_engine::cluster::messages::{FromNode, ToNode};
use shardlab_engine::net::frame::TensorHeader;

/// Equal JSON, except that an f64 may move by an ULP or so: serde_json's default
/// parser (without the `float_roundtrip` feature) can read the 17 digits it
/// printed back one ULP away. Messages carry only timings as f64, where that
/// does not matter; model constants are f32, whose short forms read exactly.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(p), Some(q)) if x.is_f64() || y.is_f64() => {
                p == q
                    || (p - q).abs()
                        <= 4.0 * f64::EPSILON * p.abs().max(q.abs()).max(f64::MIN_POSITIVE)
            }
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Decodes `data` as `T`; if it decodes, the re-serialized form is a fixed
/// point of decode + serialize (up to float rounding, see [`same`]).
fn round_trip<T: Serialize + DeserializeOwned>(data: &[u8]) {
    let Ok(msg) = serde_json::from_slice::<T>(data) else {
        return;
    };
    let Ok(once) = serde_json::to_value(&msg) else {
        panic!("a decoded message does not serialize");
    };
    let text = once.to_string();
    let back: T = match serde_json::from_str(&text) {
        Ok(b) => b,
        Err(e) => panic!("own output does not decode: {e}: {text}"),
    };
    let Ok(twice) = serde_json::to_value(&back) else {
        panic!("a re-decoded message does not serialize");
    };
    assert!(
        same(&once, &twice),
        "round trip changed the message:\n{once}\n{twice}"
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
