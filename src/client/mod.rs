//! The client side of bindery: connecting to a server (`connect`), the `embed` and `models`
//! commands (`commands`) and the load generator (`load`).
//!
//! It speaks to a server only through the generated protobuf client, so it imports `shared` and
//! never `server` or `api`; the load tool's in-process baseline alone loads models, through the
//! engine, as a server would.

pub mod commands;
pub mod connect;
pub mod load;
