//! The Redis backend: one server (several pipelined connections, reconnecting on their
//! own) or a Redis Cluster (`redis.addrs` with more than one node). Connections are made
//! lazily, so an instance starts while Redis is down and uses it once it is up.
//!
//! Every command touches keys of one repository only, which share a hash tag, so each
//! lookup is a single-slot `MGET` and the same commands work on a cluster.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{
    Client, ClientTlsConfig, ConnectionAddr, ConnectionInfo, IntoConnectionInfo,
    RedisConnectionInfo, TlsCertificates,
};
use tokio::sync::OnceCell;

use super::{new_generation, CacheBackend, CacheError, Lookup, Result};
use crate::config::RedisConfig;

enum Connections {
    /// Round-robin over pipelined connections to one server.
    Single {
        pool: Vec<ConnectionManager>,
        next: AtomicUsize,
    },
    /// Made on first use (and again after a failed first use).
    Cluster {
        client: Box<redis::cluster::ClusterClient>,
        connection: OnceCell<ClusterConnection>,
    },
}

pub struct RedisCache {
    connections: Connections,
    /// Bound on one command, round trip included.
    timeout: Duration,
}

fn read_pem(path: &str) -> Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| CacheError::Config(format!("redis.tls: cannot read {path}: {e}")))
}

fn certificates(config: &RedisConfig) -> Result<Option<TlsCertificates>> {
    let tls = &config.tls;
    if !tls.enabled || (tls.certificate.is_none() && tls.clientcas.is_empty()) {
        return Ok(None);
    }
    let client_tls = match (&tls.certificate, &tls.key) {
        (Some(cert), Some(key)) => Some(ClientTlsConfig {
            client_cert: read_pem(cert)?,
            client_key: read_pem(key)?,
        }),
        _ => None,
    };
    let root_cert = if tls.clientcas.is_empty() {
        None
    } else {
        let mut all = Vec::new();
        for path in &tls.clientcas {
            all.extend(read_pem(path)?);
            all.push(b'\n');
        }
        Some(all)
    };
    Ok(Some(TlsCertificates {
        client_tls,
        root_cert,
    }))
}

fn connection_info(config: &RedisConfig, server: &str) -> Result<ConnectionInfo> {
    let (host, port) = server
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.trim_matches(['[', ']']).to_string(), p.parse().ok()?)))
        .ok_or_else(|| CacheError::Config(format!("redis address {server:?} is not host:port")))?;
    let addr = if config.tls.enabled {
        ConnectionAddr::TcpTls {
            host,
            port,
            insecure: false,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(host, port)
    };
    let mut settings = RedisConnectionInfo::default().set_db(config.db);
    if let Some(user) = &config.username {
        settings = settings.set_username(user);
    }
    if let Some(password) = &config.password {
        settings = settings.set_password(&password.0);
    }
    Ok(addr.into_connection_info()?.set_redis_settings(settings))
}

impl RedisCache {
    /// Sets up the connections without waiting for Redis to answer.
    pub async fn connect(config: &RedisConfig) -> Result<Self> {
        let servers = config.servers();
        let certs = certificates(config)?;
        let timeout = config.readtimeout + config.writetimeout;
        let connections = if servers.len() == 1 {
            let info = connection_info(config, &servers[0])?;
            let client = match certs {
                Some(c) => Client::build_with_tls(info, c)?,
                None => Client::open(info)?,
            };
            let manager_config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(config.dialtimeout))
                .set_response_timeout(Some(timeout))
                .set_number_of_retries(2)
                .set_max_delay(Duration::from_millis(500));
            let pool = (0..config.connections())
                .map(|_| {
                    ConnectionManager::new_lazy_with_config(client.clone(), manager_config.clone())
                })
                .collect::<redis::RedisResult<Vec<_>>>()?;
            Connections::Single {
                pool,
                next: AtomicUsize::new(0),
            }
        } else {
            let nodes = servers
                .iter()
                .map(|s| connection_info(config, s))
                .collect::<Result<Vec<_>>>()?;
            let mut builder = ClusterClientBuilder::new(nodes)
                .connection_timeout(config.dialtimeout)
                .response_timeout(timeout)
                .retries(2);
            if let Some(user) = &config.username {
                builder = builder.username(user);
            }
            if let Some(password) = &config.password {
                builder = builder.password(&password.0);
            }
            if config.tls.enabled {
                builder = builder.tls(redis::TlsMode::Secure);
            }
            if let Some(c) = certs {
                builder = builder.certs(c);
            }
            Connections::Cluster {
                client: Box::new(builder.build()?),
                connection: OnceCell::new(),
            }
        };
        Ok(RedisCache {
            connections,
            timeout,
        })
    }

    /// Runs `pipe` on a connection, bounded by the configured timeouts.
    async fn run<T: redis::FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T> {
        let work = async {
            match &self.connections {
                Connections::Single { pool, next } => {
                    let i = next.fetch_add(1, Ordering::Relaxed) % pool.len();
                    let mut c = pool[i].clone();
                    pipe.query_async(&mut c).await
                }
                Connections::Cluster { client, connection } => {
                    let c = connection
                        .get_or_try_init(|| client.get_async_connection())
                        .await?;
                    pipe.query_async(&mut c.clone()).await
                }
            }
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(CacheError::Timeout(self.timeout)),
        }
    }
}

#[async_trait]
impl CacheBackend for RedisCache {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn lookup(&self, generation_key: &str, key: &str) -> Result<Lookup> {
        let mut pipe = redis::pipe();
        pipe.cmd("MGET").arg(generation_key).arg(key);
        let (generation, entry): (Option<u64>, Option<Vec<u8>>) = self
            .run::<((Option<u64>, Option<Vec<u8>>),)>(&pipe)
            .await?
            .0;
        if let Some(generation) = generation {
            return Ok(Lookup { generation, entry });
        }
        // No generation yet (new repository, evicted, Redis restarted): create one unless
        // another instance just did, and use whichever is there. Entries stored before
        // cannot match a fresh random generation.
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(generation_key)
            .arg(new_generation())
            .arg("NX")
            .ignore()
            .cmd("GET")
            .arg(generation_key);
        let (generation,): (Option<u64>,) = self.run(&pipe).await?;
        let generation = generation.ok_or_else(|| {
            CacheError::Redis(redis::RedisError::from((
                redis::ErrorKind::Client,
                "generation key vanished right after it was set",
            )))
        })?;
        Ok(Lookup {
            generation,
            entry: None,
        })
    }

    async fn store(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<()> {
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(key)
            .arg(value)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .ignore();
        self.run::<()>(&pipe).await
    }

    async fn probe(&self) -> Result<()> {
        let mut pipe = redis::pipe();
        pipe.cmd("PING").ignore();
        match &self.connections {
            Connections::Single { pool, .. } => {
                for c in pool {
                    let mut c = c.clone();
                    let call = pipe.query_async::<()>(&mut c);
                    match tokio::time::timeout(self.timeout, call).await {
                        Ok(r) => r?,
                        Err(_) => return Err(CacheError::Timeout(self.timeout)),
                    }
                }
                Ok(())
            }
            Connections::Cluster { .. } => self.run::<()>(&pipe).await,
        }
    }

    async fn renew(&self, generation_key: &str) -> Result<()> {
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(generation_key)
            .arg(new_generation())
            .ignore();
        self.run::<()>(&pipe).await
    }
}
