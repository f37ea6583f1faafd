//! The connection file Jupyter writes for a kernel: where to bind each
//! socket and the key that signs messages.

use std::path::Path;

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("reading connection file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("connection file {path} is not valid: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("connection file {path}: unsupported {what} {value:?}")]
    Unsupported {
        path: String,
        what: &'static str,
        value: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
pub struct ConnectionInfo {
    pub ip: String,
    pub transport: String,
    pub shell_port: u16,
    pub iopub_port: u16,
    pub stdin_port: u16,
    pub control_port: u16,
    pub hb_port: u16,
    #[serde(default)]
    pub key: String,
    #[serde(default = "default_scheme")]
    pub signature_scheme: String,
}

fn default_scheme() -> String {
    "hmac-sha256".to_string()
}

impl ConnectionInfo {
    pub fn read(path: &Path) -> Result<Self, ConnectionError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConnectionError::Read {
            path: shown.clone(),
            source,
        })?;
        let info: ConnectionInfo =
            serde_json::from_str(&text).map_err(|source| ConnectionError::Parse {
                path: shown.clone(),
                source,
            })?;
        if info.transport != "tcp" {
            return Err(ConnectionError::Unsupported {
                path: shown,
                what: "transport",
                value: info.transport,
            });
        }
        if info.signature_scheme != "hmac-sha256" {
            return Err(ConnectionError::Unsupported {
                path: shown,
                what: "signature_scheme",
                value: info.signature_scheme,
            });
        }
        Ok(info)
    }

    pub fn endpoint(&self, port: u16) -> String {
        format!("{}://{}:{}", self.transport, self.ip, port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_jupyter_connection_file_and_refuses_other_schemes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.json");
        let mut body = serde_json::json!({
            "shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4,
            "hb_port": 5, "ip": "127.0.0.1", "key": "abc", "transport": "tcp",
            "signature_scheme": "hmac-sha256", "kernel_name": "shardlab"
        });
        std::fs::write(&path, body.to_string()).unwrap();
        let info = ConnectionInfo::read(&path).unwrap();
        assert_eq!(info.endpoint(info.hb_port), "tcp://127.0.0.1:5");
        assert_eq!(info.key, "abc");
        body["signature_scheme"] = "hmac-md5".into();
        std::fs::write(&path, body.to_string()).unwrap();
        let err = ConnectionInfo::read(&path).unwrap_err().to_string();
        assert!(err.contains("hmac-md5"), "{err}");
    }
}
