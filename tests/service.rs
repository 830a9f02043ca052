//! The tests' server starts through the service's own start-up, as
//! `blindpass serve` does: the steps it shows in the audit log are the
//! service's, in the service's order.

mod common;

use common::TestServer;

#[test]
fn the_test_server_starts_as_the_service_does() {
    let server = TestServer::start();
    let kinds = common::event_kinds(&server.authority);
    // The first period, the start itself, then the keys.
    assert_eq!(
        kinds[..3],
        ["period-opened", "period-key-created", "service-started"],
        "{kinds:?}"
    );
    assert!(!kinds[3..].is_empty(), "{kinds:?}");
    assert!(
        kinds[3..].iter().all(|k| k == "signing-key-published"),
        "{kinds:?}"
    );
    // The expiry pass at start ran too: it is what remembers the clock
    // reading a later pass must not go behind.
    server.clock.set(common::START - time::Duration::seconds(1));
    let report = server.authority.destroy_due(time::Duration::ZERO).unwrap();
    assert!(report.clock_went_backwards);
}
