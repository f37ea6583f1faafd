//! The shared cluster token: generated, stored in a 0600 file, and never
//! printed. `Token` has no `Display` and its `Debug` shows only the length,
//! so it cannot leak through `{:?}` in a log line or an error.

use std::fmt;
use std::io::Write;
use std::path::Path;

use super::error::TokenError;

/// A shared secret. The bytes used for the HMAC are exactly the file's
/// trimmed contents (for a generated token: 64 hex digits).
#[derive(Clone, PartialEq, Eq)]
pub struct Token(Vec<u8>);

impl Token {
    /// 32 random bytes from the thread CSPRNG, as 64 hex digits.
    pub fn generate() -> Token {
        let bytes: [u8; 32] = rand::random();
        Token(hex::encode(bytes).into_bytes())
    }

    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Token {
        Token(bytes.into())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Reads a token file, trimming surrounding whitespace (a trailing
    /// newline from `echo` is not part of the secret).
    pub fn from_file(path: &Path) -> Result<Token, TokenError> {
        let raw = std::fs::read(path).map_err(|source| TokenError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let trimmed = raw.trim_ascii();
        if trimmed.is_empty() {
            return Err(TokenError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(Token(trimmed.to_vec()))
    }

    /// Writes the token (plus a newline) readable by its owner only.
    pub fn write_file(&self, path: &Path) -> Result<(), TokenError> {
        let io_err = |source| TokenError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(io_err)?;
        // `mode` only applies to a new file; tighten an existing one too.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(io_err)?;
        }
        file.write_all(&self.0).map_err(io_err)?;
        file.write_all(b"\n").map_err(io_err)?;
        file.sync_all().map_err(io_err)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token(<redacted, {} bytes>)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_hex_and_distinct() {
        let a = Token::generate();
        let b = Token::generate();
        assert_eq!(a.as_bytes().len(), 64);
        assert!(a.as_bytes().iter().all(u8::is_ascii_hexdigit));
        assert_ne!(a, b);
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let t = Token::from_bytes("hunter2-very-secret");
        let shown = format!("{t:?} {:?}", Some(&t));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }

    #[test]
    fn file_round_trip_is_private_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "old contents").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let t = Token::generate();
        t.write_file(&path).unwrap();
        assert_eq!(Token::from_file(&path).unwrap(), t);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "  s3cret \n\n").unwrap();
        assert_eq!(Token::from_file(&path).unwrap().as_bytes(), b"s3cret");
    }

    #[test]
    fn empty_or_missing_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, " \n").unwrap();
        let err = Token::from_file(&path).unwrap_err();
        assert!(matches!(err, TokenError::Empty { .. }), "{err:?}");
        assert!(err.to_string().contains("token"), "{err}");
        let missing = dir.path().join("nope");
        let err = Token::from_file(&missing).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
