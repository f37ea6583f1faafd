//! `synth:PRESET[:ARCH[:QUANT[:SEED]]]` names a synthetic model, written
//! into `<home>/synth/` on first use and reused after, so a transcript or a
//! notebook can load a mixture-of-experts shape without a download or a
//! file passed in by hand: `:load synth:moe-tiny`,
//! `:load synth:7b-a1b:qwen3moe:q4_0`. The same name always gives the same
//! bytes (synth is deterministic), and one writer at a time holds the lock.

use std::path::PathBuf;

use super::error::StoreError;
use super::lock::InstallLock;
use super::{ModelSource, ModelStore, PullEvent};
use crate::model::gguf::GgmlType;
use crate::model::synth::{synth, SynthArch, SynthOptions};

pub const PREFIX: &str = "synth:";

impl ModelStore {
    /// The file `name` (which starts with `synth:`) stands for, written if missing.
    pub(super) fn synthetic(
        &self,
        name: &str,
        progress: &mut dyn FnMut(PullEvent),
    ) -> Result<ModelSource, StoreError> {
        let opts = parse(name)?;
        let stem = format!(
            "{}-{}-{}-s{}",
            name.trim_start_matches(PREFIX)
                .split(':')
                .next()
                .unwrap_or(""),
            opts.arch.name(),
            opts.quant.name().to_ascii_lowercase(),
            opts.seed
        );
        let dir = self.home.join("synth");
        let path = dir.join(format!("{stem}.gguf"));
        let _lock = InstallLock::acquire(&self.locks_dir(), &format!("synth-{stem}"))?;
        if let Ok(meta) = std::fs::metadata(&path) {
            progress(PullEvent::AlreadyCached {
                path: path.clone(),
                bytes: meta.len(),
            });
            return Ok(ModelSource::Gguf(path));
        }
        std::fs::create_dir_all(&dir).map_err(StoreError::io(&dir, "create"))?;
        let partial: PathBuf = dir.join(format!(".{stem}.gguf.partial"));
        let started = std::time::Instant::now();
        let report = synth(&opts, &partial, &mut |_, _| {}).map_err(|e| StoreError::Synth {
            name: name.to_string(),
            problem: e.to_string(),
        })?;
        std::fs::rename(&partial, &path).map_err(StoreError::io(&path, "rename into place"))?;
        progress(PullEvent::Installed {
            path: path.clone(),
            bytes: report.bytes,
            seconds: started.elapsed().as_secs_f64(),
        });
        Ok(ModelSource::Gguf(path))
    }
}

/// `synth:PRESET[:ARCH[:QUANT[:SEED]]]` as synth options.
fn parse(name: &str) -> Result<SynthOptions, StoreError> {
    let bad = |problem: String| StoreError::Synth {
        name: name.to_string(),
        problem,
    };
    let mut parts = name.trim_start_matches(PREFIX).split(':');
    let preset = parts
        .next()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| bad("name a preset, e.g. synth:moe-tiny or synth:tiny:qwen3:q8_0".into()))?;
    let arch = match parts.next() {
        Some(a) => {
            SynthArch::from_name(a).ok_or_else(|| bad(format!("unknown architecture '{a}'")))?
        }
        None => default_arch(preset),
    };
    let mut opts = SynthOptions::preset(arch, preset).map_err(|e| bad(e.to_string()))?;
    if let Some(q) = parts.next() {
        opts.quant =
            GgmlType::from_name(q).ok_or_else(|| bad(format!("unknown quant type '{q}'")))?;
    }
    if let Some(s) = parts.next() {
        opts.seed = s
            .parse()
            .map_err(|_| bad(format!("seed '{s}' is not a whole number")))?;
    }
    if let Some(extra) = parts.next() {
        return Err(bad(format!("unexpected '{extra}' after the seed")));
    }
    Ok(opts)
}

/// Mixture-of-experts presets are Qwen3-MoE shapes; the rest are llama.
fn default_arch(preset: &str) -> SynthArch {
    let moe = preset.starts_with("moe") || preset.contains("-a");
    match SynthArch::from_name("qwen3moe") {
        Some(a) if moe => a,
        _ => SynthArch::Llama,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_with_defaults_and_say_what_is_wrong() {
        let o = parse("synth:tiny:qwen3:q8_0:7").expect("parses");
        assert_eq!(
            (o.arch, o.quant, o.seed),
            (SynthArch::Qwen3, GgmlType::Q8_0, 7)
        );
        let e = |n: &str| parse(n).expect_err(n).to_string();
        assert!(e("synth:").contains("name a preset"), "{}", e("synth:"));
        assert!(e("synth:tiny:gpt9").contains("unknown architecture 'gpt9'"));
        assert!(e("synth:tiny:llama:q9").contains("unknown quant type 'q9'"));
        assert!(e("synth:tiny:llama:q8_0:x").contains("seed 'x'"));
        assert!(e("synth:nope").contains("unknown preset"));
    }

    #[test]
    fn a_synthetic_model_is_written_once_then_reused() {
        let home = tempfile::tempdir().expect("tempdir");
        let store = ModelStore::new(home.path().to_path_buf());
        let mut events = Vec::new();
        let a = store
            .resolve("synth:tiny:llama:q8_0", &mut |e| events.push(e.to_string()))
            .expect("writes");
        let b = store
            .resolve("synth:tiny:llama:q8_0", &mut |e| events.push(e.to_string()))
            .expect("reuses");
        assert_eq!(a, b);
        assert!(events[0].starts_with("installed"), "{events:?}");
        assert!(events[1].starts_with("cached"), "{events:?}");
    }
}
