//! The API key file `--api-key-file` and `:serve --api-key-file` name.

use std::path::Path;

/// Why the key file gives no key.
#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    #[error("reading the API key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the API key file {0} is empty")]
    Empty(String),
}

/// The key in `path`, without surrounding whitespace.
pub fn read_api_key(path: &Path) -> Result<String, ApiKeyError> {
    let key = std::fs::read_to_string(path).map_err(|source| ApiKeyError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let key = key.trim();
    if key.is_empty() {
        return Err(ApiKeyError::Empty(path.display().to_string()));
    }
    Ok(key.to_string())
}
