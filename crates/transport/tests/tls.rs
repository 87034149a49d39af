//! The transport over real loopback gRPC, against the scripted ChangeData servers of
//! `kvfeed-testkit`.
//!
//! Mutual TLS to a store, from CA, certificate and key files; a plain-text client cannot talk to
//! it.

mod common;

use common::{CLUSTER_ID, config, is_register, next_event, region, target};
use kvfeed_testkit::store::{Method, TestStore, resolved, tls_data_dir};
use kvfeed_transport::{StreamEvent, Transport, TransportConfig};

#[tokio::test]
async fn mutual_tls_with_ca_cert_and_key_files() {
    let store = TestStore::start_tls(true);
    let data = tls_data_dir();
    let tls = kvfeed_transport::TlsConfig {
        ca_file: data.join("ca.pem"),
        client_identity: Some(kvfeed_transport::ClientIdentity {
            cert_file: data.join("server.pem"),
            key_file: data.join("server.key"),
        }),
        domain_name: Some("localhost".to_owned()),
    };
    let (transport, mut events) =
        Transport::new(TransportConfig { tls: Some(tls), ..config() }, CLUSTER_ID).unwrap();
    transport.register(&target(1, &store), region(1, 10)).await.unwrap();
    let call = store.accept().await;
    assert_eq!(call.method, Method::V2);
    assert!(is_register(&call.first, 1, 10));
    call.send(resolved(1, vec![10], 3)).await;
    assert!(matches!(next_event(&mut events).await, StreamEvent::Resolved { ts: 3, .. }));

    // A plain-text client cannot talk to it.
    let (plain, _events) = Transport::new(config(), CLUSTER_ID).unwrap();
    assert!(plain.register(&target(1, &store), region(1, 10)).await.is_err());
}
