//! The NBD edge: accepts connections, bounds them, runs the handshake with a
//! timeout, then hands the socket to the transmission driver.

mod buffers;
mod connection;
mod handshake;
mod iopool;
mod spin;
mod transmission;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::config::Config;
use crate::metrics::Metrics;
use buffers::BufPool;
use connection::Limits;
use handshake::{Outcome, StoreCatalog, canonical_name};
use iopool::IoPool;
use transmission::Session;

/// How often an open connection checks that its export still exists.
const EXPORT_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// How long shutdown waits for open connections to finish their requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything connections share.
pub(crate) struct NbdService {
    store: store::Store,
    pool: Arc<IoPool>,
    buffers: Arc<BufPool>,
    limits: Limits,
    handshake_timeout: Duration,
    connections: Arc<Semaphore>,
    shutting_down: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
}

impl NbdService {
    pub(crate) fn new(
        store: store::Store,
        config: &Config,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Self> {
        Ok(Self {
            store,
            pool: Arc::new(IoPool::new(config.io_threads)?),
            buffers: BufPool::new(),
            limits: Limits {
                max_payload: config.max_payload,
                max_inflight_bytes: config.max_inflight_bytes,
                max_inflight_requests: config.max_inflight_requests,
                poll: config.poll,
            },
            handshake_timeout: config.handshake_timeout,
            connections: Arc::new(Semaphore::new(config.max_connections)),
            shutting_down: Arc::new(AtomicBool::new(false)),
            metrics,
        })
    }

    /// Accepts until `shutdown` turns true, then lets open connections finish
    /// their in-flight requests (later ones get ESHUTDOWN).
    pub(crate) async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut tasks = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let Ok(permit) = self.connections.clone().try_acquire_owned() else {
                            warn!(%peer, "connection limit reached; refusing connection");
                            continue;
                        };
                        let this = self.clone();
                        let shutdown = shutdown.clone();
                        let span = info_span!("conn", %peer, export = tracing::field::Empty);
                        tasks.spawn(async move {
                            this.connection(stream, shutdown).await;
                            drop(permit);
                        }.instrument(span));
                    }
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = shutdown.changed() => break,
            }
        }
        self.shutting_down.store(true, Ordering::SeqCst);
        drop(listener);
        let drain = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
            warn!("connections still open after {DRAIN_TIMEOUT:?}; closing them");
            tasks.abort_all();
        }
    }

    /// Moves the socket to a thread of its own for the transmission phase
    /// (see `connection.rs` for why) and waits for it; on shutdown, shuts the
    /// socket's read side so the thread stops reading and drains.
    async fn transmission(
        &self,
        stream: TcpStream,
        leftover: bytes::BytesMut,
        session: Arc<Session>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), connection::ConnectionError> {
        let socket = stream.into_std()?;
        socket.set_nonblocking(false)?;
        let control = socket.try_clone()?;
        let (done_tx, mut done) = tokio::sync::oneshot::channel();
        let (pool, limits) = (self.pool.clone(), self.limits);
        let export = session.export.clone();
        let span = tracing::Span::current();
        std::thread::Builder::new().name("clonebd-conn".into()).spawn(move || {
            let _entered = span.enter();
            let _ = done_tx.send(connection::serve(socket, leftover, session, pool, limits));
        })?;
        // An idle client of a deleted export (a pruned snapshot) would wait in
        // read() forever: look at the export now and then and hang up.
        let mut liveness = tokio::time::interval(EXPORT_CHECK_INTERVAL);
        loop {
            tokio::select! {
                result = &mut done => return result.unwrap_or(Ok(())),
                _ = shutdown.wait_for(|stop| *stop) => break,
                _ = liveness.tick() => {
                    if !export.is_live() {
                        debug!("export was deleted; closing the idle connection");
                        let _ = control.shutdown(std::net::Shutdown::Both);
                    }
                }
            }
        }
        let _ = control.shutdown(std::net::Shutdown::Read);
        done.await.unwrap_or(Ok(()))
    }

    async fn connection(&self, mut stream: TcpStream, shutdown: watch::Receiver<bool>) {
        let _ = stream.set_nodelay(true);
        let catalog = StoreCatalog { store: &self.store, max_payload: self.limits.max_payload };
        let negotiated = tokio::time::timeout(
            self.handshake_timeout,
            handshake::negotiate(&mut stream, &catalog),
        )
        .await;
        let (negotiated, leftover) = match negotiated {
            Err(_) => {
                debug!("handshake timed out");
                return;
            }
            Ok(Err(e)) => {
                debug!(error = %e, source = ?std::error::Error::source(&e), "handshake failed");
                return;
            }
            Ok(Ok(Outcome::Closed)) => return,
            Ok(Ok(Outcome::Transmission(n, leftover))) => (n, leftover),
        };
        let name = canonical_name(&negotiated.export.name).to_owned();
        tracing::Span::current().record("export", name.as_str());
        let Some(export) = self.store.open_export(&name) else {
            debug!("export vanished during the handshake");
            return;
        };
        info!(
            structured = negotiated.structured_replies,
            extended = negotiated.extended_headers,
            "connected"
        );
        let metrics = self.metrics.for_export(&name);
        metrics.connections.inc();
        let session = Arc::new(Session::new(
            export,
            &negotiated,
            self.limits.max_payload,
            self.shutting_down.clone(),
            metrics.clone(),
            self.buffers.clone(),
        ));
        match self.transmission(stream, leftover, session, shutdown).await {
            Ok(()) => info!("disconnected"),
            Err(e) => {
                info!(error = %e, source = ?std::error::Error::source(&e), "connection closed")
            }
        }
        metrics.connections.dec();
    }
}
