//! Socket tests: real TCP on 127.0.0.1 (port 0), a thread per side, every
//! wait bounded by a deadline so a bug fails the test instead of hanging it.

mod connection;
mod handshake;
mod heartbeat;
mod link;
mod pipe;
mod sealed;
mod transport;

use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use super::Connection;

/// Long enough never to fire on a loaded machine; short enough that a
/// hang becomes a failure.
pub(super) const PATIENCE: Duration = Duration::from_secs(10);

/// A connected pair: (client side named "node1", server side named "coordinator").
pub(super) fn pair() -> (Connection, Connection) {
    let (client, server) = raw_pair();
    (
        Connection::from_stream(client, "node1").unwrap(),
        Connection::from_stream(server, "coordinator").unwrap(),
    )
}

/// A connected pair of plain sockets (client, server).
pub(super) fn raw_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let client = TcpStream::connect(addr).unwrap();
    let (server, _) = listener.accept().unwrap();
    (client, server)
}
