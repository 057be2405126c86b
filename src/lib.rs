//! levee: an adaptive load-shedding reverse proxy on Pingora. The binary (`main.rs`) only
//! wires the CLI; everything else lives here so tests and benches use the same code.

pub mod access_log;
pub mod admin;
pub mod cache;
pub mod cli;
pub mod config;
pub mod demo;
pub mod edge;
pub mod metrics;
pub mod pools;
pub mod process_metrics;
pub mod protection;
pub mod proxy;
pub mod ratelog;
pub mod reason;
pub mod reload;
pub mod respond;
pub mod routing;
pub mod runtime;
pub mod server;
pub mod supervisor;
pub mod switches;
