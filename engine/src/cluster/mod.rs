//! The cluster: the node daemon (`node`) and the coordinator that connects
//! to nodes, streams each its slice, and drives generation (`coordinator`).
//! They talk in the `messages` defined here over `crate::net` connections,
//! each watched by a `heartbeat`.

pub mod coordinator;
pub mod heartbeat;
pub mod link_settings;
pub mod messages;
pub mod node;

#[cfg(test)]
pub(crate) mod tests;
