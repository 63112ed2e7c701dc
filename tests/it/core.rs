//! The handler driven in-process against the memory store.

use berth::{Body, Config, MemoryStore, Registry, registry::ManualEnv};

fn assert_send<T: Send>(_: &T) {}

#[tokio::test]
async fn handle_future_is_send() {
    let reg = Registry::new(MemoryStore::new(), ManualEnv::at(1), Config::default());
    let fut = reg.handle(http::Request::get("/v2/").body(Body::Empty).unwrap());
    assert_send(&fut);
    let resp = fut.await;
    assert_eq!(resp.status(), 200);
}
