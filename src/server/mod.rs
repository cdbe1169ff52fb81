//! Assembles a running registry from a [`Config`](crate::config::Config): metadata store, blob store, core,
//! HTTP server and background work. One file per part: the core and its stores
//! (`stores`), the listening socket (`listener`), the application (`app`), the HTTP
//! server (`http_server`) and the debug listener (`debug_listener`), background work
//! (`background`), the start-up lines (`banner`), signals and the drain (`shutdown`),
//! and `wharf serve`'s order of things (`serve`).

mod app;
mod background;
mod banner;
mod debug_listener;
mod error;
mod http_server;
mod listener;
mod serve;
mod shutdown;
mod stores;

pub use background::spawn_notifications;
pub use banner::redact;
pub use error::StartError;
pub use http_server::http_server;
pub use listener::Listener;
pub use serve::serve;
pub use stores::{blob_backend, registry};
