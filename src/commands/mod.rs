//! One file per subcommand; each turns parsed flags into engine calls and
//! prints the results.

pub mod models;
pub mod progress;
pub mod run;
pub mod synth;
