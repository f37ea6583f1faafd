//! `:record FILE`: the rest of the session, written as a transcript that
//! `shardlab replay` can check.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Session, SessionError};
use crate::output::Output;
use crate::transcript::format::{header, input_lines};

pub(super) struct Recorder {
    file: File,
    path: PathBuf,
}

impl Recorder {
    fn create(path: &Path) -> Result<Self, SessionError> {
        let io = |source| SessionError::Io {
            what: format!("writing {}", path.display()),
            source,
        };
        let mut file = File::create(path).map_err(io)?;
        file.write_all(header().as_bytes()).map_err(io)?;
        Ok(Recorder {
            file,
            path: path.to_path_buf(),
        })
    }

    /// One command (a multi-line prompt in its `"""` form) and its output,
    /// already rendered with placeholders.
    pub fn write(&mut self, line: &str, output: &str) -> Result<(), SessionError> {
        let mut text = String::new();
        for l in input_lines(line) {
            text.push_str(&l);
            text.push('\n');
        }
        text.push_str(output);
        self.file
            .write_all(text.as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(|source| SessionError::Io {
                what: format!("writing {}", self.path.display()),
                source,
            })
    }
}

impl Session {
    pub(super) fn record(&mut self, path: Option<PathBuf>) -> Result<Output, SessionError> {
        match path {
            None => match self.recorder.take() {
                Some(r) => Ok(Output::text(format!(
                    "stopped recording; replay with `shardlab replay {}`",
                    r.path.display()
                ))),
                None => Err(SessionError::state("not recording")),
            },
            Some(path) => {
                self.recorder = Some(Recorder::create(&path)?);
                Ok(Output::text(format!(
                    "recording to {} (`:record off` stops)",
                    path.display()
                )))
            }
        }
    }
}
