//! AES-256-GCM for sealed links, from the fastest implementation this CPU
//! can run. Both give the same bytes, so the two ends of a link need not
//! agree on which they use.
//!
//! - **Accelerated** (`graviola`): AES-NI, PCLMULQDQ and AVX2 on x86-64
//!   (VAES and AVX-512 where present); AES, PMULL and SHA-2 on ARMv8
//!   (every Apple Silicon chip). It is pure Rust with inline assembly, so
//!   it needs no C compiler for any target. About 4x the throughput of the
//!   ChaCha20-Poly1305 crate it replaced on the 2-core dev box (BENCHMARKS.md,
//!   "Sealed links").
//! - **Portable** (`aes-gcm`, RustCrypto): for CPUs without those
//!   extensions (graviola refuses to run there). It still uses AES-NI and
//!   CLMUL when it finds them, and constant-time software otherwise.

use std::sync::OnceLock;

use aes_gcm::aead::{AeadInPlace, KeyInit};

/// Bytes of the GCM tag.
pub const TAG_LEN: usize = 16;

/// Which implementation a cipher runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Implementation {
    Accelerated,
    Portable,
}

impl Implementation {
    /// The fastest one this CPU runs (checked once per process).
    pub(crate) fn best() -> Self {
        static BEST: OnceLock<Implementation> = OnceLock::new();
        *BEST.get_or_init(|| {
            if graviola::util::is_cpu_supported() {
                Implementation::Accelerated
            } else {
                Implementation::Portable
            }
        })
    }
}

/// One AES-256-GCM key, ready to seal and open. Both variants hold their
/// expanded key schedules and GHASH tables, hundreds of bytes, hence boxed.
pub(crate) enum Aes256Gcm {
    Accelerated(Box<graviola::aead::AesGcm>),
    Portable(Box<aes_gcm::Aes256Gcm>),
}

impl Aes256Gcm {
    pub(crate) fn new(key: &[u8; 32], implementation: Implementation) -> Self {
        match implementation {
            Implementation::Accelerated => {
                Aes256Gcm::Accelerated(Box::new(graviola::aead::AesGcm::new(key)))
            }
            Implementation::Portable => {
                Aes256Gcm::Portable(Box::new(aes_gcm::Aes256Gcm::new(aes_gcm::Key::<
                    aes_gcm::Aes256Gcm,
                >::from_slice(
                    key
                ))))
            }
        }
    }

    /// Encrypts `payload` in place, authenticating `aad` with it; returns
    /// the tag.
    pub(crate) fn seal(&self, nonce: &[u8; 12], aad: &[u8], payload: &mut [u8]) -> [u8; TAG_LEN] {
        match self {
            Aes256Gcm::Accelerated(c) => {
                let mut tag = [0u8; TAG_LEN];
                c.encrypt(nonce, aad, payload, &mut tag);
                tag
            }
            Aes256Gcm::Portable(c) => {
                // Fails only for a payload over GCM's 64 GiB limit, which a
                // sealed segment (64 KiB) never reaches.
                c.encrypt_in_place_detached(aes_gcm::Nonce::from_slice(nonce), aad, payload)
                    .expect("a sealed segment is within AES-GCM's length limit")
                    .into()
            }
        }
    }

    /// Decrypts `payload` in place if `tag` proves it and `aad`; false
    /// otherwise (the payload is then garbage, never read).
    pub(crate) fn open(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        payload: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> bool {
        match self {
            Aes256Gcm::Accelerated(c) => c.decrypt(nonce, aad, payload, tag).is_ok(),
            Aes256Gcm::Portable(c) => c
                .decrypt_in_place_detached(
                    aes_gcm::Nonce::from_slice(nonce),
                    aad,
                    payload,
                    aes_gcm::Tag::from_slice(tag),
                )
                .is_ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [0x42; 32];

    fn nonce(n: u64) -> [u8; 12] {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&n.to_le_bytes());
        nonce
    }

    #[test]
    fn the_accelerated_cipher_is_chosen_exactly_where_the_cpu_runs_it() {
        // What graviola needs, asked of the standard library instead.
        #[cfg(target_arch = "x86_64")]
        let capable = is_x86_feature_detected!("aes")
            && is_x86_feature_detected!("pclmulqdq")
            && is_x86_feature_detected!("avx")
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("bmi1")
            && is_x86_feature_detected!("adx");
        #[cfg(target_arch = "aarch64")]
        let capable = std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
            && std::arch::is_aarch64_feature_detected!("sha2");
        assert_eq!(
            Implementation::best() == Implementation::Accelerated,
            capable
        );
    }

    #[test]
    fn both_implementations_give_the_same_bytes_and_open_each_other() {
        let fast = Aes256Gcm::new(&KEY, Implementation::Accelerated);
        let portable = Aes256Gcm::new(&KEY, Implementation::Portable);
        // Empty, shorter than a block, odd, and a whole segment.
        for (i, len) in [0usize, 5, 16, 1000, 64 * 1024].into_iter().enumerate() {
            let text: Vec<u8> = (0..len).map(|b| (b * 7 + i) as u8).collect();
            let (mut a, mut b) = (text.clone(), text.clone());
            let tag_a = fast.seal(&nonce(i as u64), b"head", &mut a);
            let tag_b = portable.seal(&nonce(i as u64), b"head", &mut b);
            assert_eq!((&a, tag_a), (&b, tag_b), "{len} bytes");
            assert!(portable.open(&nonce(i as u64), b"head", &mut a, &tag_a));
            assert!(fast.open(&nonce(i as u64), b"head", &mut b, &tag_b));
            assert_eq!((a, b), (text.clone(), text));
        }
    }

    #[test]
    fn a_known_answer_from_the_gcm_specification() {
        // McGrew and Viega, "The Galois/Counter Mode of Operation", test
        // case 16: AES-256, 96-bit IV, 60 bytes of plaintext, 20 of AAD.
        let key = hex::decode("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
            .unwrap();
        let iv = hex::decode("cafebabefacedbaddecaf888").unwrap();
        let text = hex::decode(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
             1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        )
        .unwrap();
        let aad = hex::decode("feedfacedeadbeeffeedfacedeadbeefabaddad2").unwrap();
        let want = hex::decode(
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
             8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
        )
        .unwrap();
        let want_tag = hex::decode("76fc6ece0f4e1768cddf8853bb2d551b").unwrap();
        let key: [u8; 32] = key.try_into().unwrap();
        let iv: [u8; 12] = iv.try_into().unwrap();
        for implementation in [Implementation::Accelerated, Implementation::Portable] {
            let cipher = Aes256Gcm::new(&key, implementation);
            let mut body = text.clone();
            let tag = cipher.seal(&iv, &aad, &mut body);
            assert_eq!(
                (&body, &tag[..]),
                (&want, &want_tag[..]),
                "{implementation:?}"
            );
        }
    }

    #[test]
    fn a_flipped_bit_in_the_text_tag_or_aad_fails_to_open() {
        for implementation in [Implementation::Accelerated, Implementation::Portable] {
            let cipher = Aes256Gcm::new(&KEY, implementation);
            let mut body = b"partial sums".to_vec();
            let tag = cipher.seal(&nonce(3), b"head", &mut body);
            let mut text = body.clone();
            text[0] ^= 1;
            assert!(!cipher.open(&nonce(3), b"head", &mut text, &tag));
            let mut bad_tag = tag;
            bad_tag[15] ^= 0x80;
            assert!(!cipher.open(&nonce(3), b"head", &mut body.clone(), &bad_tag));
            assert!(!cipher.open(&nonce(3), b"heae", &mut body.clone(), &tag));
            assert!(!cipher.open(&nonce(4), b"head", &mut body.clone(), &tag));
            assert!(cipher.open(&nonce(3), b"head", &mut body, &tag));
        }
    }
}
