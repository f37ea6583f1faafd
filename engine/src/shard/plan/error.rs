//! Everything that can go wrong while planning, each naming what failed.

use crate::model::gguf::GgufError;

/// Bytes as MiB with one decimal, the unit every plan message uses.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// "1 node", "3 nodes".
fn count(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

fn suggestion_text(s: &Option<String>) -> String {
    s.as_ref().map_or(String::new(), |s| format!("; {s}"))
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("{0}")]
    Config(String),
    /// The inputs of a speed prediction do not match the plan.
    #[error("predicting speed: {0}")]
    Speed(String),
    #[error("layout '{input}': {problem}")]
    BadRequest { input: String, problem: String },
    #[error("{layout} over 0 nodes: connect at least one node")]
    NoNodes { layout: String },
    #[error("single runs the whole model on one node, but {connected} are connected (use tensor, pipeline or hybrid)")]
    SingleNeedsOne { connected: usize },
    #[error("hybrid {tensor}x{pipeline} needs {needed} nodes, {connected} connected")]
    HybridShape {
        tensor: usize,
        pipeline: usize,
        needed: usize,
        connected: usize,
    },
    #[error("the expert layout places whole experts on nodes, but {model} is a dense model (use tensor, pipeline or hybrid)")]
    ExpertNeedsMoe { model: String },
    #[error("the context must be at least 1 token")]
    ZeroContext,
    #[error("node '{node}' gets 0 layers: {stages} pipeline stages but the model has only {layers} layers")]
    ZeroLayers {
        node: String,
        stages: usize,
        layers: usize,
    },
    #[error("--layers {given}: {problem}")]
    BadLayers { given: String, problem: String },
    #[error(
        "cannot split {heads} attention heads over {nodes} nodes: {tensor} is {dtype}, so each \
         node's heads x head_dim {head_dim} must be a multiple of {block} ({unit} heads); at most \
         {} can hold heads{}",
        count(*.max_nodes, "node"),
        if *.moe { "; the expert layout runs it over more by replicating attention" } else { "" }
    )]
    HeadAlignment {
        heads: usize,
        nodes: usize,
        tensor: String,
        dtype: String,
        head_dim: usize,
        block: usize,
        unit: usize,
        max_nodes: usize,
        /// A mixture of experts, whose expert layout can replicate attention.
        moe: bool,
    },
    #[error("cannot split the FFN: {tensor} is {dtype} (blocks of {block}) but the FFN has {ffn} columns")]
    FfnAlignment {
        tensor: String,
        dtype: String,
        block: usize,
        ffn: usize,
    },
    #[error("the model has no tensor '{tensor}', which the layout needs")]
    MissingTensor { tensor: String },
    #[error("tensor '{tensor}' ({dtype}, {cols} columns): columns {start}..{end} do not fall on its {block}-wide blocks")]
    Misaligned {
        tensor: String,
        dtype: String,
        cols: usize,
        start: usize,
        end: usize,
        block: usize,
    },
    #[error("the plan has {planned} nodes but {given} node budgets were given")]
    NodeMismatch { planned: usize, given: usize },
    #[error(
        "node '{node}' does not fit: predicted {}, budget {}, short by {}{}",
        mib(*.predicted), mib(*.budget), mib(*.shortfall), suggestion_text(.suggestion)
    )]
    DoesNotFit {
        node: String,
        predicted: u64,
        budget: u64,
        shortfall: u64,
        suggestion: Option<String>,
    },
}
