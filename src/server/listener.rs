//! The bound listening socket (`http.net`, `http.addr`): TCP or a unix socket, and the
//! URL it is reached at.

use std::net::TcpListener;

use super::StartError;

/// A bound listening socket (`http.net`).
pub enum Listener {
    Tcp(TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

impl Listener {
    /// Binds `http.addr` on `http.net`. A unix socket left by a previous run (nothing
    /// answers on it) is replaced.
    pub fn bind(http: &crate::config::HttpConfig) -> Result<Listener, StartError> {
        if http.is_unix() {
            let path = std::path::Path::new(&http.addr);
            if std::fs::symlink_metadata(path)
                .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
                && std::os::unix::net::UnixStream::connect(path).is_err()
            {
                let _ = std::fs::remove_file(path);
            }
            return std::os::unix::net::UnixListener::bind(path)
                .map(Listener::Unix)
                .map_err(|source| StartError::Listen {
                    addr: http.addr.clone(),
                    source,
                });
        }
        let addr = http.socket_addr()?;
        TcpListener::bind(addr)
            .map(Listener::Tcp)
            .map_err(|source| StartError::Listen {
                addr: addr.to_string(),
                source,
            })
    }

    /// Where it listens, as a URL (`https://127.0.0.1:5000`, `unix:/run/wharf.sock`).
    pub fn url(&self, tls: bool) -> String {
        let scheme = if tls { "https" } else { "http" };
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map(|a| format!("{scheme}://{a}"))
                .unwrap_or_default(),
            Listener::Unix(l) => l
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| format!("unix:{}", p.display())))
                .unwrap_or_default(),
        }
    }
}
