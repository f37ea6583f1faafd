//! Sealed links: every frame after the handshake is encrypted and
//! authenticated with AES-256-GCM (NIST SP 800-38D; `cipher.rs`
//! picks the implementation).
//!
//! - **Keys.** One per direction, derived from the shared token, both
//!   handshake nonces and the X25519 secret the handshake's ephemeral
//!   shares agree on: `HMAC-SHA256(token, "shardlab-seal" || direction ||
//!   client_nonce || server_nonce || shared)`. Every connection has keys of
//!   its own, the two directions never share a key, and a session recorded
//!   now cannot be opened later even with the token (forward secrecy).
//! - **Next keys.** Every [`SEGMENTS_PER_KEY`] segments both ends move, in
//!   step and without a message, to `HMAC-SHA256(key, "shardlab-seal next
//!   key")`. GCM's guarantees weaken with the blocks one key has sealed
//!   (TLS 1.3 stops at 2^24.5 records of 16 KiB, about 380 GB, per key),
//!   and a cluster's links carry that much: a 70b decode moves about 10 MiB a
//!   token over each link, a weight load tens of GiB. 2^20 segments is at
//!   most 64 GiB per key.
//! - **Nonces.** A segment counter per direction, starting at 0: four zero
//!   bytes, then the counter as u64 little-endian. Nothing about it travels,
//!   so a frame replayed, dropped or moved is opened under the wrong nonce
//!   and fails, like a frame with a flipped bit. It never restarts, so no
//!   nonce repeats under any key either.
//! - **What is sealed.** The 12-byte frame header (and a tensor's header,
//!   its dtype and shape) travels in the clear as associated data of every
//!   segment: it is authenticated, not hidden, so the receiver can size its
//!   buffers before a tag is checked. The rest of the payload is encrypted
//!   in segments of [`SEGMENT`] bytes (the last one shorter, at least one
//!   even when empty), each followed by its 16-byte tag, each under a nonce
//!   of its own; the tags count in the frame's length.
//! - **Why segments.** A sender encrypts the next segment while the kernel
//!   sends the last, and a receiver opens each as it arrives, so a large
//!   tensor (a weight chunk, a prefill's activations) crosses the link
//!   while it is being sealed, instead of after.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

pub use super::cipher::TAG_LEN;
use super::cipher::{Aes256Gcm, Implementation};

/// Plaintext bytes per sealed segment (the last may be shorter).
pub const SEGMENT: usize = 64 * 1024;

/// Segments a sealed body of `plain` bytes is cut into (one when empty).
pub fn segments(plain: usize) -> usize {
    plain.div_ceil(SEGMENT).max(1)
}

/// Bytes a body of `plain` bytes takes on the wire once sealed.
pub fn sealed_len(plain: usize) -> usize {
    plain + TAG_LEN * segments(plain)
}

/// The body length whose sealed form is `wire` bytes, if there is one.
pub fn plain_len(wire: usize) -> Option<usize> {
    let record = SEGMENT + TAG_LEN;
    let (full, rest) = (wire / record, wire % record);
    let plain = match rest {
        0 if full > 0 => full * SEGMENT,
        // A shorter last segment (or the one empty segment of an empty body).
        r if r > TAG_LEN || (r == TAG_LEN && full == 0) => full * SEGMENT + r - TAG_LEN,
        _ => return None,
    };
    Some(plain)
}

/// Where segment `i` of a body of `plain` bytes lies in that body.
pub fn segment_range(plain: usize, i: usize) -> std::ops::Range<usize> {
    let start = (i * SEGMENT).min(plain);
    start..(start + SEGMENT).min(plain)
}

/// Whether a connection's frames are sealed after the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkSecurity {
    /// AES-256-GCM on every frame (the default).
    #[default]
    Sealed,
    /// Frames in the clear after the handshake, for measuring the cipher's
    /// cost (`--insecure-plaintext`).
    Plaintext,
}

impl LinkSecurity {
    /// The byte the handshake's proofs cover, so a peer on the path cannot
    /// downgrade a sealed request to plaintext unnoticed.
    pub(crate) fn code(self) -> u8 {
        match self {
            LinkSecurity::Sealed => 1,
            LinkSecurity::Plaintext => 0,
        }
    }
}

impl std::fmt::Display for LinkSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LinkSecurity::Sealed => "sealed (AES-256-GCM)",
            LinkSecurity::Plaintext => "plaintext (--insecure-plaintext)",
        })
    }
}

/// Which end of the handshake this side was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Client,
    Server,
}

const CLIENT_TO_SERVER: &[u8] = b"shardlab-seal client->server";
const SERVER_TO_CLIENT: &[u8] = b"shardlab-seal server->client";

/// The two keys of one connection, as this side uses them.
pub(crate) struct SessionKeys {
    send: [u8; 32],
    recv: [u8; 32],
}

impl SessionKeys {
    /// Both directions' keys for `side`. `token` is known to be non-empty
    /// (the handshake that preceded this refused an empty one); `shared`
    /// is the key exchange's secret.
    pub(crate) fn derive(
        token: &[u8],
        client_nonce: &[u8; 32],
        server_nonce: &[u8; 32],
        shared: &[u8; 32],
        side: Side,
    ) -> Option<Self> {
        let key = |direction: &[u8]| -> Option<[u8; 32]> {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(token).ok()?;
            mac.update(direction);
            mac.update(client_nonce);
            mac.update(server_nonce);
            mac.update(shared);
            Some(mac.finalize().into_bytes().into())
        };
        let (c2s, s2c) = (key(CLIENT_TO_SERVER)?, key(SERVER_TO_CLIENT)?);
        Some(match side {
            Side::Client => SessionKeys {
                send: c2s,
                recv: s2c,
            },
            Side::Server => SessionKeys {
                send: s2c,
                recv: c2s,
            },
        })
    }
}

/// A segment that failed to open: its number in this direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unopened {
    pub segment: u64,
}

/// Sealing failed: only when the counter has run out (2^64 frames).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exhausted;

/// Segments sealed under one key before both ends move to the next.
pub(crate) const SEGMENTS_PER_KEY: u64 = 1 << 20;

const NEXT_KEY: &[u8] = b"shardlab-seal next key";

/// One direction's cipher, its key and its segment counter.
struct Direction {
    key: [u8; 32],
    cipher: Aes256Gcm,
    implementation: Implementation,
    next: u64,
    per_key: u64,
}

impl Direction {
    fn new(key: &[u8; 32], implementation: Implementation, per_key: u64) -> Self {
        Direction {
            key: *key,
            cipher: Aes256Gcm::new(key, implementation),
            implementation,
            next: 0,
            per_key,
        }
    }

    /// The nonce of the next segment, and advances past it, first moving
    /// to the next key when this one has sealed its share.
    fn take_nonce(&mut self) -> Option<(u64, [u8; 12])> {
        let n = self.next;
        if n > 0 && n.is_multiple_of(self.per_key) {
            self.next_key();
        }
        self.next = n.checked_add(1)?;
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&n.to_le_bytes());
        Some((n, nonce))
    }

    fn next_key(&mut self) {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .expect("HMAC takes a key of any length");
        mac.update(NEXT_KEY);
        self.key = mac.finalize().into_bytes().into();
        self.cipher = Aes256Gcm::new(&self.key, self.implementation);
    }
}

/// Both directions of one sealed connection.
pub(crate) struct Seal {
    send: Direction,
    recv: Direction,
}

impl std::fmt::Debug for Seal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seal")
            .field("sent", &self.send.next)
            .field("received", &self.recv.next)
            .finish_non_exhaustive()
    }
}

impl Seal {
    pub(crate) fn new(keys: &SessionKeys) -> Self {
        Self::with(keys, Implementation::best(), SEGMENTS_PER_KEY)
    }

    /// A seal on a chosen implementation, moving keys every `per_key`
    /// segments (tests shorten it to see the move).
    fn with(keys: &SessionKeys, implementation: Implementation, per_key: u64) -> Self {
        Seal {
            send: Direction::new(&keys.send, implementation, per_key),
            recv: Direction::new(&keys.recv, implementation, per_key),
        }
    }

    /// Encrypts one segment in place under the next send nonce,
    /// authenticating `aad` with it; returns the tag to send after it.
    pub(crate) fn seal(
        &mut self,
        aad: &[u8],
        payload: &mut [u8],
    ) -> Result<[u8; TAG_LEN], Exhausted> {
        let (_, nonce) = self.send.take_nonce().ok_or(Exhausted)?;
        Ok(self.send.cipher.seal(&nonce, aad, payload))
    }

    /// Decrypts one segment in place under the next receive nonce, if
    /// `tag` proves it and `aad` untouched. The counter advances either way: a
    /// connection that failed to open a frame is not read again.
    pub(crate) fn open(
        &mut self,
        aad: &[u8],
        payload: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), Unopened> {
        let segment = self.recv.next;
        let (_, nonce) = self.recv.take_nonce().ok_or(Unopened { segment })?;
        if self.recv.cipher.open(&nonce, aad, payload, tag) {
            Ok(())
        } else {
            Err(Unopened { segment })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &[u8] = b"a shared token";

    fn pair() -> (Seal, Seal) {
        let (c, s) = ([1u8; 32], [2u8; 32]);
        let client = SessionKeys::derive(TOKEN, &c, &s, &[9; 32], Side::Client).unwrap();
        let server = SessionKeys::derive(TOKEN, &c, &s, &[9; 32], Side::Server).unwrap();
        (Seal::new(&client), Seal::new(&server))
    }

    fn sealed(seal: &mut Seal, aad: &[u8], text: &[u8]) -> (Vec<u8>, [u8; TAG_LEN]) {
        let mut body = text.to_vec();
        let tag = seal.seal(aad, &mut body).unwrap();
        (body, tag)
    }

    #[test]
    fn segment_arithmetic_round_trips_and_refuses_impossible_lengths() {
        for plain in [
            0,
            1,
            15,
            16,
            17,
            SEGMENT - 1,
            SEGMENT,
            SEGMENT + 1,
            3 * SEGMENT,
            3 * SEGMENT + 7,
        ] {
            let wire = sealed_len(plain);
            assert_eq!(plain_len(wire), Some(plain), "plain {plain}");
            let covered: usize = (0..segments(plain))
                .map(|i| segment_range(plain, i).len())
                .sum();
            assert_eq!(covered, plain);
        }
        assert_eq!(sealed_len(0), TAG_LEN);
        assert_eq!(sealed_len(SEGMENT + 1), SEGMENT + 1 + 2 * TAG_LEN);
        // Too short for a tag, or a trailing segment with a tag and no data.
        for wire in [
            0,
            1,
            TAG_LEN - 1,
            SEGMENT + TAG_LEN + 5,
            2 * (SEGMENT + TAG_LEN) + TAG_LEN,
        ] {
            assert_eq!(plain_len(wire), None, "wire {wire}");
        }
    }

    #[test]
    fn frames_open_in_order_on_the_other_side_only() {
        let (mut client, mut server) = pair();
        for text in [&b"first"[..], b"second", b""] {
            let (mut body, tag) = sealed(&mut client, b"head", text);
            if !text.is_empty() {
                assert_ne!(&body[..], text, "the payload travels encrypted");
            }
            server.open(b"head", &mut body, &tag).unwrap();
            assert_eq!(&body[..], text);
        }
        // The server's own sends use the other key: the client opens them,
        // but a frame sent back to the server itself (reflected) does not.
        let (body, tag) = sealed(&mut server, b"h", b"to the client");
        let mut reflected = body.clone();
        assert!(server.open(b"h", &mut reflected, &tag).is_err());
        let mut back = body;
        client.open(b"h", &mut back, &tag).unwrap();
        assert_eq!(&back[..], b"to the client");
    }

    #[test]
    fn a_flipped_bit_a_replay_a_reorder_or_other_header_fails() {
        let (mut client, mut server) = pair();
        let (body0, tag0) = sealed(&mut client, b"head", b"frame zero");
        let (body1, tag1) = sealed(&mut client, b"head", b"frame one");

        let mut flipped = body0.clone();
        flipped[3] ^= 0x10;
        assert_eq!(
            server.open(b"head", &mut flipped, &tag0),
            Err(Unopened { segment: 0 })
        );

        // Fresh receivers for the rest: frame 1 arriving first (reordered),
        // frame 0 arriving twice (replayed), frame 0 under another header.
        let (_, mut fresh) = pair();
        let mut second_first = body1.clone();
        assert!(fresh.open(b"head", &mut second_first, &tag1).is_err());

        let (_, mut fresh) = pair();
        let mut once = body0.clone();
        fresh.open(b"head", &mut once, &tag0).unwrap();
        let mut again = body0.clone();
        assert_eq!(
            fresh.open(b"head", &mut again, &tag0),
            Err(Unopened { segment: 1 }),
            "a replayed frame is refused"
        );

        let (_, mut fresh) = pair();
        let mut other_header = body0;
        assert!(fresh.open(b"hea d", &mut other_header, &tag0).is_err());
    }

    #[test]
    fn another_connection_or_token_cannot_open_it() {
        let c = [1u8; 32];
        let s = [2u8; 32];
        let mut client =
            Seal::new(&SessionKeys::derive(TOKEN, &c, &s, &[9; 32], Side::Client).unwrap());
        let (body, tag) = sealed(&mut client, b"", b"secret");
        // Another connection (nonce), another token, another key exchange.
        for (token, s, shared) in [
            (TOKEN, [3u8; 32], [9; 32]),
            (&b"another token"[..], s, [9; 32]),
            (TOKEN, s, [8; 32]),
        ] {
            let keys = SessionKeys::derive(token, &c, &s, &shared, Side::Server).unwrap();
            let mut server = Seal::new(&keys);
            let mut copy = body.clone();
            assert!(server.open(b"", &mut copy, &tag).is_err());
        }
    }

    fn pair_with(client: Implementation, server: Implementation, per_key: u64) -> (Seal, Seal) {
        let (c, s) = ([1u8; 32], [2u8; 32]);
        let keys = |side| SessionKeys::derive(TOKEN, &c, &s, &[9; 32], side).unwrap();
        (
            Seal::with(&keys(Side::Client), client, per_key),
            Seal::with(&keys(Side::Server), server, per_key),
        )
    }

    #[test]
    fn both_ends_move_to_the_next_key_in_step_and_it_is_another_key() {
        // Keys move every 3 segments here: segments 0-2, 3-5, 6-8 and 9
        // are sealed under four different keys.
        let (mut client, mut server) = pair_with(Implementation::best(), Implementation::best(), 3);
        let (mut unmoving, _) = pair_with(Implementation::best(), Implementation::best(), u64::MAX);
        for i in 0..10u64 {
            let text = format!("segment {i}");
            let (mut body, tag) = sealed(&mut client, b"head", text.as_bytes());
            let (same_key, _) = sealed(&mut unmoving, b"head", text.as_bytes());
            assert_eq!(
                body == same_key,
                i < 3,
                "segment {i} under the first key only before 3"
            );
            server.open(b"head", &mut body, &tag).unwrap();
            assert_eq!(body, text.as_bytes());
        }
        // A receiver that never moved fails at the first segment of the second key.
        let (mut client, _) = pair_with(Implementation::best(), Implementation::best(), 3);
        let (_, mut stuck) = pair_with(Implementation::best(), Implementation::best(), 4);
        for i in 0..4u64 {
            let (mut body, tag) = sealed(&mut client, b"", b"x");
            assert_eq!(
                stuck.open(b"", &mut body, &tag).is_ok(),
                i < 3,
                "segment {i}"
            );
        }
    }

    #[test]
    fn ends_on_different_implementations_understand_each_other() {
        let (mut client, mut server) =
            pair_with(Implementation::Accelerated, Implementation::Portable, 2);
        for i in 0..5 {
            let text = vec![i as u8; 1000 + i];
            let (mut body, tag) = sealed(&mut client, b"head", &text);
            server.open(b"head", &mut body, &tag).unwrap();
            assert_eq!(body, text);
            let (mut back, tag) = sealed(&mut server, b"", &text);
            client.open(b"", &mut back, &tag).unwrap();
            assert_eq!(back, text);
        }
    }
}
