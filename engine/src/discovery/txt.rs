//! The TXT record of a node's advertisement: what a coordinator shows for a
//! node before it connects. It holds the node's name, the wire protocol and
//! shardlab versions, and its worker threads; never the token, nor anything
//! derived from it.

use std::collections::HashMap;

use serde::Serialize;

const NAME: &str = "name";
const PROTOCOL: &str = "proto";
const VERSION: &str = "version";
const THREADS: &str = "threads";

/// What a node says about itself on the LAN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeAdvert {
    /// The node's `--name`.
    pub name: String,
    /// The wire protocol it speaks (`net::PROTOCOL_VERSION`).
    pub protocol: u16,
    /// shardlab's version.
    pub version: String,
    /// Worker threads.
    pub threads: usize,
}

/// A TXT record that is not a node's advertisement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub enum TxtError {
    #[error("the TXT record has no '{0}'")]
    Missing(&'static str),
    #[error("the TXT record's '{key}' is not a number: '{value}'")]
    NotANumber { key: &'static str, value: String },
}

impl NodeAdvert {
    /// The record as key/value pairs, in a fixed order.
    pub fn to_txt(&self) -> Vec<(String, String)> {
        vec![
            (NAME.into(), self.name.clone()),
            (PROTOCOL.into(), self.protocol.to_string()),
            (VERSION.into(), self.version.clone()),
            (THREADS.into(), self.threads.to_string()),
        ]
    }

    /// Reads a record back; keys it does not know are ignored, so a later
    /// node may add some.
    pub fn from_txt(txt: &HashMap<String, String>) -> Result<Self, TxtError> {
        let get = |key: &'static str| txt.get(key).ok_or(TxtError::Missing(key));
        let number = |key: &'static str| -> Result<u64, TxtError> {
            let value = get(key)?;
            value.parse().map_err(|_| TxtError::NotANumber {
                key,
                value: value.clone(),
            })
        };
        let protocol = number(PROTOCOL)?;
        Ok(NodeAdvert {
            name: get(NAME)?.clone(),
            protocol: u16::try_from(protocol).map_err(|_| TxtError::NotANumber {
                key: PROTOCOL,
                value: protocol.to_string(),
            })?,
            version: get(VERSION)?.clone(),
            threads: number(THREADS)? as usize,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn advert() -> NodeAdvert {
        NodeAdvert {
            name: "gpu-box".into(),
            protocol: 3,
            version: "0.1.0".into(),
            threads: 8,
        }
    }

    fn map(pairs: Vec<(String, String)>) -> HashMap<String, String> {
        pairs.into_iter().collect()
    }

    #[test]
    fn a_record_reads_back_as_written() {
        assert_eq!(NodeAdvert::from_txt(&map(advert().to_txt())), Ok(advert()));
    }

    #[test]
    fn the_record_holds_only_the_four_public_keys() {
        let keys: Vec<String> = advert().to_txt().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["name", "proto", "version", "threads"]);
    }

    #[test]
    fn unknown_keys_are_ignored_and_missing_ones_named() {
        let mut txt = map(advert().to_txt());
        txt.insert("later".into(), "x".into());
        assert_eq!(NodeAdvert::from_txt(&txt), Ok(advert()));
        txt.remove("version");
        assert_eq!(
            NodeAdvert::from_txt(&txt),
            Err(TxtError::Missing("version"))
        );
    }

    #[test]
    fn numbers_that_are_not_numbers_are_refused() {
        let mut txt = map(advert().to_txt());
        txt.insert("proto".into(), "70000".into());
        assert!(matches!(
            NodeAdvert::from_txt(&txt),
            Err(TxtError::NotANumber { key: "proto", .. })
        ));
        txt.insert("proto".into(), "3".into());
        txt.insert("threads".into(), "many".into());
        assert_eq!(
            NodeAdvert::from_txt(&txt),
            Err(TxtError::NotANumber {
                key: "threads",
                value: "many".into()
            })
        );
    }
}
