//! The frame decoder (`net::frame`) on arbitrary bytes, as a socket reader
//! would see them: never a panic, never more bytes consumed than given, and
//! every accepted frame re-encodes to exactly the bytes it was parsed from
//! (the wire format has one encoding per frame), whose every prefix is
//! "need more bytes" rather than an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardlab_engine::net::frame::{parse_frame, FrameLimits, HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    let tight = FrameLimits {
        max_control: 64,
        max_tensor: 256,
    };
    for limits in [FrameLimits::default(), tight] {
        let Ok(Some((frame, used))) = parse_frame(data, &limits) else {
            continue;
        };
        assert!(
            used >= HEADER_LEN && used <= data.len(),
            "used {used} of {}",
            data.len()
        );
        let mut again = Vec::new();
        if let Err(e) = frame.encode(&mut again) {
            panic!("a parsed frame does not re-encode: {e}");
        }
        assert_eq!(again, &data[..used], "re-encoding differs");
        for cut in [0, 1, HEADER_LEN - 1, HEADER_LEN, used / 2, used - 1] {
            if cut < used {
                match parse_frame(&data[..cut], &limits) {
                    Ok(None) => {}
                    other => panic!("prefix {cut} of a {used}-byte frame: {other:?}"),
                }
            }
        }
    }
});
