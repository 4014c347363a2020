//! Schedule routes: the real router over the real scheduler and store (in a
//! temporary directory), driven with `oneshot`.

use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::json;

use super::{FakeCatalog, TOKEN, app, call};
use crate::admin::{AdminState, router};
use crate::schedule::{SavedPolicies, ScheduleConfig, Scheduler};

struct Fixture {
    app: axum::Router,
    store: store::Store,
    _dir: tempfile::TempDir,
}

fn fixture(test_hooks: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = store::Store::open(store::StoreConfig::new(dir.path())).unwrap();
    store.create_volume("pg", 16 << 20, store::DEFAULT_CHUNK_SIZE).unwrap().unwrap();
    let config: ScheduleConfig = toml::from_str("hourly = 12").unwrap();
    let saved = SavedPolicies::load(dir.path()).unwrap();
    let scheduler = Arc::new(Scheduler::new(Arc::new(store.clone()), config, saved, true, None));
    let state = AdminState::with_catalog(Arc::new(FakeCatalog::default()), TOKEN.into())
        .with_schedules(scheduler, test_hooks);
    Fixture { app: router(state), store, _dir: dir }
}

#[tokio::test]
async fn without_a_scheduler_the_routes_say_so() {
    let reply = call(&app(), "GET", "/v1/schedules", None).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn schedules_are_shown_set_and_reset() {
    let f = fixture(false);
    let list = call(&f.app, "GET", "/v1/schedules", None).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    let pg = &list.json()[0];
    assert_eq!(pg["volume"], "pg");
    assert_eq!(
        pg["policy"],
        json!({"enabled": true, "hourly": 12, "daily": 7, "weekly": 4, "monthly": 0})
    );
    assert_eq!(pg["source"], "config");
    assert!(pg["next_tick"].as_str().is_some_and(|t| t.ends_with(":00:00Z")), "{pg}");
    assert_eq!(pg["last_snapshot"], json!(null));

    let set =
        call(&f.app, "PUT", "/v1/volumes/pg/schedule", Some(json!({"hourly": 48, "monthly": 2})))
            .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text);
    assert_eq!(set.json()["source"], "api");
    assert_eq!(set.json()["policy"]["hourly"], 48);
    assert_eq!(set.json()["policy"]["monthly"], 2);
    let got = call(&f.app, "GET", "/v1/volumes/pg/schedule", None).await;
    assert_eq!(got.json(), set.json());

    let typo = call(&f.app, "PUT", "/v1/volumes/pg/schedule", Some(json!({"hourli": 1}))).await;
    assert_eq!(typo.status, StatusCode::BAD_REQUEST);
    assert!(typo.error().contains("hourli"), "{}", typo.error());
    let nothing = json!({"hourly": 0, "daily": 0, "weekly": 0, "monthly": 0});
    let bad = call(&f.app, "PUT", "/v1/volumes/pg/schedule", Some(nothing)).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.error().contains("at least one"), "{}", bad.error());
    let ghost = call(&f.app, "PUT", "/v1/volumes/ghost/schedule", Some(json!({"hourly": 1}))).await;
    assert_eq!(ghost.status, StatusCode::NOT_FOUND);
    assert_eq!(ghost.error(), "volume ghost not found");

    let reset = call(&f.app, "DELETE", "/v1/volumes/pg/schedule", None).await;
    assert_eq!(reset.status, StatusCode::OK);
    assert_eq!(reset.json()["source"], "config");
    assert_eq!(reset.json()["policy"]["hourly"], 12);
    f.store.close().unwrap();
}

#[tokio::test]
async fn a_tick_at_a_given_time_needs_the_test_hooks() {
    let f = fixture(false);
    let at = json!({"now": "2030-01-01T05:10:00Z"});
    let refused = call(&f.app, "POST", "/v1/schedule/tick", Some(at.clone())).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.error().contains("--enable-test-hooks"), "{}", refused.error());
    // Without a time it runs now, for real.
    let now = call(&f.app, "POST", "/v1/schedule/tick", None).await;
    assert_eq!(now.status, StatusCode::OK, "{}", now.text);
    assert!(now.json()["volumes"][0]["taken"].as_str().is_some_and(|s| s.starts_with("pg@")));
    f.store.close().unwrap();

    let f = fixture(true);
    let tick = call(&f.app, "POST", "/v1/schedule/tick", Some(at)).await;
    assert_eq!(tick.status, StatusCode::OK, "{}", tick.text);
    assert_eq!(
        tick.json(),
        json!({"now": "2030-01-01T05:10:00Z", "volumes": [
            {"volume": "pg", "taken": "pg@2030-01-01T05:00Z", "pruned": [], "failures": []}
        ]})
    );
    let list = call(&f.app, "GET", "/v1/schedules", None).await;
    assert_eq!(list.json()[0]["last_snapshot"], "pg@2030-01-01T05:00Z");
    assert_eq!(list.json()[0]["scheduled_snapshots"], 1);
    let bad = call(&f.app, "POST", "/v1/schedule/tick", Some(json!({"now": "yesterday"}))).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    f.store.close().unwrap();
}
