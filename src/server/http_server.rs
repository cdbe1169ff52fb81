//! The main HTTP server: the request state built from `http.*` (limits, timeouts,
//! trusted proxies, health, trust, write limiter) and the actix server on the bound
//! listener — plain TCP, TLS (HTTP/2 and HTTP/1.1, or HTTP/1.1 only) or a unix socket.

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::{web, HttpServer};

use crate::config::Config;
use crate::http::AppState;
use crate::registry::Registry;

use super::app::app;
use super::debug_listener::start_debug;
use super::{Listener, StartError};

/// Starts the HTTP server on `listener` (already bound, so tests can use port 0).
pub fn http_server(
    registry: Registry,
    config: &Config,
    listener: TcpListener,
) -> Result<Server, StartError> {
    let auth = crate::auth::Authorizer::from_config(&config.auth)?;
    start_http(registry, auth, config, Listener::Tcp(listener))
}

pub(super) fn start_http(
    registry: Registry,
    auth: crate::auth::Authorizer,
    config: &Config,
    listener: Listener,
) -> Result<Server, StartError> {
    let clients = crate::http::client_addr::ClientAddr::new(config.http.trusted_proxies()?);
    let per_client = crate::http::per_client::PerClient::new(
        config.http.limits.connectionsperclient,
        clients.clone(),
    );
    let health = crate::http::health::Health::spawn(&config.health, &registry);
    let trust = crate::trust::Trust::from_config(&config.trust, registry.clone())
        .map_err(StartError::Trust)?;
    let state = web::Data::new(AppState {
        trust,
        registry,
        auth,
        clients,
        health,
        transfers: crate::http::transfers::Transfers::new(
            config.http.limits.transfers,
            config.http.timeouts.body.0,
            config.http.limits.manifestbytes,
        ),
        writes: config.http.limits.writes.map(|w| {
            crate::http::write_limiter::WriteLimiter::new(w.concurrent, w.queued, w.queuetimeout.0)
        }),
    });
    let timeouts = config.http.timeouts;
    let public_metrics = !config.http.metrics_on_debug();
    if let Some(debug) = &config.http.debug {
        start_debug(state.clone(), debug)?;
    }
    let urls = web::Data::new(crate::http::urls::Urls::from_config(&config.http));
    let extra_headers = config.http.headers.clone();
    let access_log = crate::http::access::AccessLog(!config.log.accesslog.disabled);
    let addr = listener.url(config.http.tls.is_some());
    let listen_error = |source| StartError::Listen {
        addr: addr.clone(),
        source,
    };
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let drain = config.http.drain_timeout().as_secs();
    let http2 = !config.http.http2.disabled;
    let tls = match &config.http.tls {
        Some(tls) => Some(crate::http::tls::server_config(tls, http2)?),
        None => None,
    };
    // Per connection: its guard, TCP_USER_TIMEOUT, and its place under
    // `connectionsperclient` (TCP peers only: a unix socket has no peer address).
    let on_connect = crate::http::transfers::on_connect(timeouts.send.0, per_client);
    type TlsTcp = actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>;
    let server = match (listener, tls) {
        (Listener::Tcp(listener), Some(tls)) if !http2 => {
            // actix-web's HttpServer always offers h2 over TLS: HTTP/1.1 alone is
            // actix-http's H1 service behind the rustls acceptor.
            Server::build()
                .workers(workers)
                .max_concurrent_connections(config.http.limits.connections.div_ceil(workers))
                .disable_signals()
                .shutdown_timeout(drain)
                .listen("wharf-https-h1", listener, move || {
                    let app = app(
                        state.clone(),
                        urls.clone(),
                        access_log,
                        public_metrics,
                        &extra_headers,
                    );
                    let on_connect = on_connect.clone();
                    actix_http::HttpService::build()
                        .client_request_timeout(timeouts.header.0)
                        .keep_alive(timeouts.idle.0)
                        .on_connect_ext(move |io: &TlsTcp, ext| on_connect(io, ext))
                        .h1(actix_service::map_config(app, |()| {
                            actix_web::dev::AppConfig::default()
                        }))
                        .rustls_0_23(tls.clone())
                })
                .map_err(listen_error)?
                .run()
        }
        (listener, tls) => {
            let builder = HttpServer::new(move || {
                app(
                    state.clone(),
                    urls.clone(),
                    access_log,
                    public_metrics,
                    &extra_headers,
                )
            })
            .workers(workers)
            // Per worker in actix: the configured total shared out.
            .max_connections(config.http.limits.connections.div_ceil(workers))
            .client_request_timeout(timeouts.header.0)
            .keep_alive(timeouts.idle.0)
            // TCP_USER_TIMEOUT on plain TCP connections (a TLS stream is not matched
            // there: its send timeout is the TLS layer's own).
            .on_connect(on_connect)
            // `serve` handles the signals itself, to say what happens.
            .disable_signals()
            .shutdown_timeout(drain);
            let builder = match (listener, tls) {
                (Listener::Tcp(l), Some(tls)) => builder.listen_rustls_0_23(l, tls),
                (Listener::Tcp(l), None) => builder.listen(l),
                (Listener::Unix(l), _) => builder.listen_uds(l),
            };
            builder.map_err(listen_error)?.run()
        }
    };
    Ok(server)
}
