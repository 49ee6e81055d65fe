//! The protobuf codec: the wire-format reader the gRPC binding is built on.

pub mod wire;
