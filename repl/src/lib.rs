//! shardlab's command language and its front ends.
//!
//! Every front end takes the same path: text is parsed into a
//! [`command::Command`] (`command`, one table of commands shared by the
//! parser, `:help`, completion and the notebook kernel), applied by
//! [`session::Session::exec`], which returns a structured
//! [`output::Output`] (tables, text, generations, timelines, errors), which
//! a renderer draws (`output::text`, plain text).
//!
//! - `lines`: joining `"""` multi-line prompts, for every input source
//! - `shell`: the interactive rustyline shell and `--script` runs
//! - `transcript`: recorded sessions, replayed and diffed as tests
//! - `size`: sizes as people write them (`300M`)

pub mod command;
pub mod lines;
pub mod output;
pub mod session;
pub mod shell;
pub mod size;
pub mod transcript;

pub use command::{parse, Command, ParseError};
pub use output::Output;
pub use session::{Session, SessionConfig, Sink, DEFAULT_STEP_TIMEOUT};
