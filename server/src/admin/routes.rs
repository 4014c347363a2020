//! The admin API's shape: shared state, the route table, the bearer-token
//! layer over `/v1`, and `serve` with graceful shutdown. Request handling is
//! in `handlers.rs`.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::middleware;
use axum::routing::{get, post, put};
use tokio::net::TcpListener;

use super::catalog::Catalog;
use super::error::ApiError;
use super::handlers;
use super::schedules::Schedules;
use super::token::require_token;

/// What every admin handler shares.
#[derive(Clone)]
pub struct AdminState {
    /// The store, behind the admin's view of it (tests use a fake).
    pub catalog: Arc<dyn Catalog>,
    /// The bearer token every `/v1` request must present.
    pub token: Arc<str>,
    /// The snapshot scheduler; schedule routes answer 503 without one.
    pub schedules: Option<Arc<dyn Schedules>>,
    /// Accept test-only inputs (a fake `now` for the schedule tick).
    pub test_hooks: bool,
}

impl AdminState {
    /// State over the real store.
    pub fn new(store: store::Store, token: Arc<str>) -> Self {
        Self::with_catalog(Arc::new(store), token)
    }

    /// State over any catalog, e.g. an in-memory fake in tests.
    pub fn with_catalog(catalog: Arc<dyn Catalog>, token: Arc<str>) -> Self {
        Self { catalog, token, schedules: None, test_hooks: false }
    }

    /// Adds the snapshot scheduler; `test_hooks` lets a tick run at a given `now`.
    pub fn with_schedules(mut self, schedules: Arc<dyn Schedules>, test_hooks: bool) -> Self {
        self.schedules = Some(schedules);
        self.test_hooks = test_hooks;
        self
    }
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("AdminState").finish_non_exhaustive()
    }
}

/// The admin router: `/v1/...` (bearer token required) and `GET /healthz`
/// (no token). More unauthenticated routes, such as `/metrics`, can be added
/// with `router(state).route(...)`.
pub fn router(state: AdminState) -> Router {
    let v1 = Router::new()
        .route("/volumes", get(handlers::list_volumes).post(handlers::create_volume))
        .route(
            "/volumes/{name}",
            get(handlers::get_volume)
                .patch(handlers::resize_volume)
                .delete(handlers::delete_volume),
        )
        .route("/volumes/{name}/snapshots", post(handlers::create_snapshot))
        .route("/volumes/{name}/snapshots/{snap}", axum::routing::delete(handlers::delete_snapshot))
        .route("/volumes/{name}/snapshots/{snap}/hold", post(handlers::hold_snapshot))
        .route("/volumes/{name}/snapshots/{snap}/release", post(handlers::release_snapshot))
        .route("/volumes/{name}/promote", post(handlers::promote))
        .route("/volumes/{name}/rollback", post(handlers::rollback))
        .route("/volumes/{name}/flatten", post(handlers::flatten))
        .route("/snapshots", get(handlers::list_snapshots))
        .route("/clones", post(handlers::create_clone))
        .route("/diff", get(handlers::diff))
        .route("/exports", get(handlers::list_exports))
        .route("/gc", post(handlers::gc))
        .route("/schedules", get(handlers::list_schedules))
        .route(
            "/volumes/{name}/schedule",
            get(handlers::get_schedule)
                .merge(put(handlers::set_schedule))
                .delete(handlers::reset_schedule),
        )
        .route("/schedule/tick", post(handlers::tick_schedule))
        .route_layer(middleware::from_fn_with_state(state.token.clone(), require_token));
    Router::new()
        .route("/healthz", get(handlers::healthz))
        .nest("/v1", v1)
        .fallback(async || ApiError::not_found("no such route"))
        .method_not_allowed_fallback(async || {
            ApiError::new(axum::http::StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        })
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` completes, then lets
/// in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}
