//! Authentication and authorization over real HTTP: htpasswd (Basic), bearer tokens
//! (every kind of bad token, scopes, mounts), and the built-in token server with its
//! access policy. Each test starts its own server in-process (see `support`).

mod support;

mod htpasswd;
mod logs;
mod token;
mod token_server;
mod x5c;
