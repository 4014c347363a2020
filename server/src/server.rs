//! Startup and shutdown of the whole server: the store, the NBD listener and
//! the admin listener, and the order in which they stop.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::admin;
use crate::config::{Config, ConfigError, DEFAULT_VOLUME, DEFAULT_VOLUME_SIZE};
use crate::metrics::Metrics;
use crate::nbd::NbdService;
use crate::schedule::{SavedError, SavedPolicies, Scheduler};

/// Why the server could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration cannot run.
    #[error("invalid configuration")]
    Config(#[from] ConfigError),
    /// Binding a listener failed.
    #[error("cannot listen on {addr}")]
    Bind {
        /// the address
        addr: SocketAddr,
        /// the cause
        #[source]
        source: std::io::Error,
    },
    /// The data directory or token file could not be prepared.
    #[error("cannot prepare data directory {dir}")]
    DataDir {
        /// the directory
        dir: String,
        /// the cause
        #[source]
        source: std::io::Error,
    },
    /// The store failed to open or to flush at shutdown.
    #[error("storage engine")]
    Store(#[from] store::StoreError),
    /// The store refused to create the default volume.
    #[error("cannot create the default volume: {0}")]
    DefaultVolume(String),
    /// `DATA/schedules.json` could not be read.
    #[error("snapshot schedules")]
    Schedules(#[from] SavedError),
    /// A thread or task failed.
    #[error("internal task failed")]
    Task(#[from] tokio::task::JoinError),
}

/// A server with its listeners bound and its store open, not yet serving.
pub struct Server {
    config: Config,
    store: store::Store,
    token: String,
    nbd: TcpListener,
    admin: TcpListener,
    schedules: SavedPolicies,
}

impl Server {
    /// Validates the config, prepares the data directory (token, store, the
    /// `default` volume on a fresh directory) and binds both listeners.
    pub async fn bind(config: Config) -> Result<Self, ServerError> {
        config.validate()?;
        let dir = config.data_dir.clone();
        let data_err = |source| ServerError::DataDir { dir: dir.display().to_string(), source };
        let fresh = is_fresh(&config.data_dir).map_err(data_err)?;
        std::fs::create_dir_all(&config.data_dir).map_err(data_err)?;
        let token = admin::load_or_create_token(&config.data_dir).map_err(data_err)?;

        let mut store_config = store::StoreConfig::new(config.data_dir.clone());
        store_config.cache_capacity = config.sled_cache;
        store_config.commit_interval = config.commit_interval;
        store_config.intent_log_bytes = config.intent_log_bytes;
        let store = tokio::task::spawn_blocking(move || store::Store::open(store_config)).await??;
        if fresh {
            let s = store.clone();
            let created = tokio::task::spawn_blocking(move || {
                s.create_volume(DEFAULT_VOLUME, DEFAULT_VOLUME_SIZE, store::DEFAULT_CHUNK_SIZE)
            })
            .await??;
            if let Err(refusal) = created {
                return Err(ServerError::DefaultVolume(refusal.to_string()));
            }
            info!(
                volume = DEFAULT_VOLUME,
                size = DEFAULT_VOLUME_SIZE,
                "created the default volume"
            );
        }

        let schedules = SavedPolicies::load(&config.data_dir)?;

        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr, source })
        };
        let nbd = bind(config.listen).await?;
        let admin = bind(config.admin).await?;
        Ok(Self { config, store, token, nbd, admin, schedules })
    }

    /// The address NBD clients connect to.
    pub fn nbd_addr(&self) -> SocketAddr {
        self.nbd.local_addr().unwrap_or(self.config.listen)
    }

    /// The address of the admin API.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr().unwrap_or(self.config.admin)
    }

    /// The admin bearer token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The storage engine (tests inspect it).
    pub fn store(&self) -> &store::Store {
        &self.store
    }

    /// Serves until `shutdown` completes; then stops accepting, lets
    /// in-flight requests finish, and commits the store.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let metrics = Metrics::new();
        let nbd = Arc::new(
            NbdService::new(self.store.clone(), &self.config, metrics.clone())
                .map_err(|source| ServerError::DataDir { dir: "io pool".into(), source })?,
        );
        let nbd_task = tokio::spawn(nbd.serve(self.nbd, stop_rx.clone()));
        let scheduler = Arc::new(Scheduler::new(
            Arc::new(self.store.clone()),
            self.config.schedule.clone(),
            self.schedules,
            self.config.schedule_timer,
            Some(metrics.schedule()),
        ));
        let schedule_task = self
            .config
            .schedule_timer
            .then(|| tokio::spawn(crate::schedule::timer::run(scheduler.clone(), stop_rx.clone())));
        let state = admin::AdminState::new(self.store.clone(), self.token.into())
            .with_schedules(scheduler, self.config.enable_test_hooks);
        let router = admin::router(state).merge(metrics_router(metrics, self.store.clone()));
        let mut admin_stop = stop_rx.clone();
        let admin_task = tokio::spawn(admin::serve(self.admin, router, async move {
            let _ = admin_stop.wait_for(|s| *s).await;
        }));

        shutdown.await;
        info!("shutting down: finishing in-flight requests");
        let _ = stop_tx.send(true);
        nbd_task.await?;
        if let Some(task) = schedule_task {
            task.await?;
        }
        match admin_task.await? {
            Ok(()) => {}
            Err(e) => warn!(error = %e, "admin listener stopped with an error"),
        }
        let store = self.store;
        tokio::task::spawn_blocking(move || store.close()).await??;
        info!("store flushed; bye");
        Ok(())
    }
}

/// `GET /metrics`: Prometheus text format, no token (loopback scrape).
fn metrics_router(metrics: Arc<Metrics>, store: store::Store) -> axum::Router {
    let handler = move || {
        let (metrics, store) = (metrics.clone(), store.clone());
        async move {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let body = tokio::task::spawn_blocking(move || {
                metrics.refresh_from_store(&store, now);
                metrics.render()
            })
            .await
            .unwrap_or_default();
            ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
        }
    };
    axum::Router::new().route("/metrics", axum::routing::get(handler))
}

/// Serves `config` until `shutdown` completes.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
    Server::bind(config).await?.run(shutdown).await
}

/// A data directory is fresh when it does not exist or is empty; only then
/// does the server create the `default` volume (a deleted `default` stays
/// deleted across restarts).
fn is_fresh(dir: &Path) -> std::io::Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e),
    }
}
