//! The handshake's ephemeral key exchange (X25519, the `x25519-dalek`
//! crate): each side sends a fresh public share and keeps its secret for
//! this one connection. The secret both then hold goes into the link's
//! keys, so a session recorded today stays sealed even if the token leaks
//! later (forward secrecy). The token's MACs cover both shares, so someone
//! on the path cannot swap in their own.

use x25519_dalek::{PublicKey, StaticSecret};

use super::auth::Bytes32;

/// One side's share: a secret used once, and its public half to send.
pub(crate) struct KeyShare {
    secret: StaticSecret,
    pub(crate) public: Bytes32,
}

impl KeyShare {
    pub(crate) fn new() -> Self {
        let secret = StaticSecret::from(rand::random::<[u8; 32]>());
        let public = Bytes32(PublicKey::from(&secret).to_bytes());
        KeyShare { secret, public }
    }

    /// The secret shared with the holder of `theirs`; `None` when their
    /// share is degenerate (a low-order point, which would make the result
    /// known to anyone). The secret half is dropped (and zeroed) here.
    pub(crate) fn agree(self, theirs: &Bytes32) -> Option<[u8; 32]> {
        let shared = self.secret.diffie_hellman(&PublicKey::from(theirs.0));
        shared.was_contributory().then(|| shared.to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_agree_and_a_degenerate_share_is_refused() {
        let (a, b) = (KeyShare::new(), KeyShare::new());
        let (a_pub, b_pub) = (a.public, b.public);
        assert_ne!(a_pub, b_pub);
        assert_eq!(a.agree(&b_pub), b.agree(&a_pub));
        // The all-zero point is of low order: any secret gives all zeros.
        assert_eq!(KeyShare::new().agree(&Bytes32([0; 32])), None);
    }
}
