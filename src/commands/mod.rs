//! One file per subcommand; each turns parsed flags into engine calls and
//! prints the results.

pub mod bench;
pub mod bench_json;
pub mod cluster;
pub mod kernel;
pub mod layout_choice;
pub mod models;
pub mod node;
pub mod perplexity;
pub mod plan;
pub mod plan_print;
pub mod probe;
pub mod progress;
pub mod replay;
pub mod run;
pub mod serve;
pub mod shell;
pub mod synth;
