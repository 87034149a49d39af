//! The PD client: leader discovery and changes, endpoints down, cluster-id checks, timeouts,
//! region and store look-ups, BatchScanRegions fallback, TLS.

use core::time::Duration;

use kvfeed_proto::metapb;
use kvfeed_regioncache::{Error, PdClient, StoreState};
use kvfeed_sim::scripted::{ScriptedPd, region, split_regions, store};
use kvfeed_span::{EncodedKey, Span};

use crate::{CLUSTER, config, connect, dead_addr};

#[tokio::test]
async fn leader_change_between_calls() {
    let fake = ScriptedPd::start(3, CLUSTER).await.unwrap();
    fake.set_regions(split_regions(&[], &[1]));
    let pd = connect(&fake).await;
    assert_eq!(pd.cluster_id(), CLUSTER);
    assert_eq!(pd.leader_addr().as_deref(), Some(&*fake.addrs()[0]));
    assert_eq!(pd.get_region(b"k").await.unwrap().map(|r| r.id()), Some(1));

    // Member 2 takes over: member 0 now refuses with "not leader", the client rediscovers.
    fake.set_leader(Some(2));
    assert_eq!(pd.get_region(b"k").await.unwrap().map(|r| r.id()), Some(1));
    assert_eq!(pd.leader_addr().as_deref(), Some(&*fake.addrs()[2]));
    assert_eq!(fake.calls(0).get_region, 2);
    assert_eq!(fake.calls(0).not_leader, 1);
    assert_eq!(fake.calls(2).get_region, 1);
    assert_eq!(fake.calls(1).get_region, 0);
}

#[tokio::test]
async fn one_endpoint_down() {
    let fake = ScriptedPd::start(1, CLUSTER).await.unwrap();
    fake.set_regions(split_regions(&[], &[1]));
    let endpoints = [format!("http://{}", dead_addr()), fake.addrs()[0].clone()];
    let pd = PdClient::connect(config(endpoints)).await.unwrap();
    assert_eq!(pd.leader_addr().as_deref(), Some(&*fake.addrs()[0]));
    assert!(pd.get_region(b"").await.unwrap().is_some());
}

#[tokio::test]
async fn leader_down_falls_back_to_another_member() {
    let mut fake = ScriptedPd::start(2, CLUSTER).await.unwrap();
    fake.set_regions(split_regions(&[], &[1]));
    // Only member 0 is configured; member 1 is learned from GetMembers.
    let pd = PdClient::connect(config([fake.urls()[0].clone()])).await.unwrap();
    fake.stop(0);
    fake.set_leader(Some(1));
    assert!(pd.get_region(b"").await.unwrap().is_some());
    assert_eq!(pd.leader_addr().as_deref(), Some(&*fake.addrs()[1]));
}

#[tokio::test]
async fn all_endpoints_down_is_unavailable() {
    let endpoints = [dead_addr(), dead_addr()];
    let error = PdClient::connect(config(endpoints)).await.unwrap_err();
    assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");
    assert!(error.is_retryable());
}

#[tokio::test]
async fn no_leader_is_unavailable_after_retries() {
    let fake = ScriptedPd::start(2, CLUSTER).await.unwrap();
    let pd = connect(&fake).await;
    fake.set_leader(None);
    let error = pd.get_region(b"").await.unwrap_err();
    assert!(matches!(error, Error::Unavailable { method: "GetRegion", .. }), "{error:?}");
    // The leader is back: the same client recovers.
    fake.set_leader(Some(1));
    assert_eq!(pd.get_region(b"").await.unwrap(), None);
}

#[tokio::test]
async fn cluster_id_mismatch_is_a_typed_error() {
    let fake = ScriptedPd::start(1, CLUSTER).await.unwrap();

    // Told to expect another cluster.
    let mut wrong = config(fake.urls());
    wrong.cluster_id = Some(CLUSTER + 1);
    let error = PdClient::connect(wrong).await.unwrap_err();
    assert!(matches!(error, Error::ClusterIdMismatch { expected: 8, got: CLUSTER }), "{error:?}");

    // PD's headers suddenly carry another id.
    let pd = connect(&fake).await;
    fake.with(|s| s.reply_cluster_id = Some(9));
    let error = pd.get_region(b"").await.unwrap_err();
    assert!(matches!(error, Error::ClusterIdMismatch { expected: CLUSTER, got: 9 }), "{error:?}");
    assert!(!error.is_retryable());

    // PD refuses our id (FAILED_PRECONDITION), naming its own.
    fake.with(|s| (s.reply_cluster_id, s.cluster_id) = (None, 9));
    let error = pd.get_store(1).await.unwrap_err();
    assert!(matches!(error, Error::ClusterIdMismatch { expected: CLUSTER, got: 9 }), "{error:?}");
    let error = pd.get_ts().await.unwrap_err();
    assert!(matches!(error, Error::ClusterIdMismatch { expected: CLUSTER, got: 9 }), "{error:?}");
}

#[tokio::test]
async fn responses_without_a_header_are_invalid() {
    let fake = ScriptedPd::start(1, CLUSTER).await.unwrap();
    fake.set_regions([region(1, b"", b"", 1, &[1])]);
    fake.put_store(store(1, "127.0.0.1:20161"));
    let pd = connect(&fake).await;
    // With headers, everything answers.
    pd.get_region(b"a").await.unwrap().unwrap();
    pd.get_ts().await.unwrap();

    fake.with(|s| s.omit_headers = true);
    let no_header =
        |e: &Error| matches!(e, Error::InvalidResponse { reason, .. } if reason == "no header");
    let error = pd.get_region(b"a").await.unwrap_err();
    assert!(no_header(&error), "GetRegion: {error:?}");
    assert!(!error.is_retryable());
    let error = pd.get_region_by_id(1).await.unwrap_err();
    assert!(no_header(&error), "GetRegionByID: {error:?}");
    let error = pd.get_store(1).await.unwrap_err();
    assert!(no_header(&error), "GetStore: {error:?}");
    let error = pd.get_all_stores(false).await.unwrap_err();
    assert!(no_header(&error), "GetAllStores: {error:?}");
    let error = pd.get_ts().await.unwrap_err();
    assert!(no_header(&error), "Tso: {error:?}");

    fake.with(|s| s.batch_scan = true);
    let error = pd.scan_regions(&Span::full(), 10).await.unwrap_err();
    assert!(no_header(&error), "BatchScanRegions: {error:?}");
    assert_eq!(fake.calls(0).scan_regions, 0);
    // PD 8.1: falls back to ScanRegions, checked the same way.
    fake.with(|s| s.batch_scan = false);
    let error = pd.scan_regions(&Span::full(), 10).await.unwrap_err();
    assert!(no_header(&error), "ScanRegions: {error:?}");
    assert_eq!(fake.calls(0).scan_regions, 1);
    fake.with(|s| s.omit_headers = false);
    assert_eq!(pd.scan_regions(&Span::full(), 10).await.unwrap().len(), 1);
    pd.get_ts().await.unwrap();
}

#[tokio::test]
async fn region_answers_must_match_the_request() {
    let fake = ScriptedPd::start(1, CLUSTER).await.unwrap();
    fake.set_regions([region(1, b"", b"m", 1, &[1]), region(2, b"m", b"", 1, &[1])]);
    let pd = connect(&fake).await;
    assert_eq!(pd.get_region(b"x").await.unwrap().map(|r| r.id()), Some(2));
    assert_eq!(pd.get_region_by_id(1).await.unwrap().map(|r| r.id()), Some(1));

    // PD answers region 1, [-inf, m), whatever is asked.
    fake.with(|s| s.region_override = Some(region(1, b"", b"m", 1, &[1])));
    let error = pd.get_region(b"x").await.unwrap_err();
    assert!(matches!(error, Error::InvalidResponse { method: "GetRegion", .. }), "{error:?}");
    assert_eq!(pd.get_region(b"a").await.unwrap().map(|r| r.id()), Some(1));
    let error = pd.get_region_by_id(2).await.unwrap_err();
    assert!(matches!(error, Error::InvalidResponse { method: "GetRegionByID", .. }), "{error:?}");
    assert_eq!(pd.get_region_by_id(1).await.unwrap().map(|r| r.id()), Some(1));
}

#[tokio::test]
async fn endpoint_of_another_cluster_is_a_typed_error() {
    let ours = ScriptedPd::start(1, CLUSTER).await.unwrap();
    let theirs = ScriptedPd::start(1, CLUSTER + 1).await.unwrap();
    let pd = PdClient::connect(config([ours.urls()[0].clone(), theirs.urls()[0].clone()]))
        .await
        .unwrap();
    // Our cluster loses its leader; discovery reaches the other cluster's PD.
    ours.set_leader(None);
    let error = pd.get_region(b"").await.unwrap_err();
    assert!(matches!(error, Error::ClusterIdMismatch { expected: CLUSTER, got: 8 }), "{error:?}");
    assert_eq!(theirs.calls(0).get_region, 0, "no region call may reach another cluster");
}

#[tokio::test]
async fn calls_time_out() {
    let fake = ScriptedPd::start(1, CLUSTER).await.unwrap();
    fake.set_regions(split_regions(&[], &[1]));
    let mut quick = config(fake.urls());
    quick.timeout = Duration::from_millis(250);
    quick.retries = 2;
    let pd = PdClient::connect(quick).await.unwrap();
    fake.with(|s| s.stalled = true);
    let error = pd.get_region(b"").await.unwrap_err();
    assert!(matches!(error, Error::Timeout { method: "GetRegion" }), "{error:?}");
    assert_eq!(fake.calls(0).get_region, 3, "one attempt and two retries");
    fake.with(|s| s.stalled = false);
    assert!(pd.get_region(b"").await.unwrap().is_some());
}

#[tokio::test]
async fn regions_by_key_and_id() {
    let fake = ScriptedPd::start(1, CLUSTER).await.unwrap();
    let pd = connect(&fake).await;
    assert_eq!(pd.get_region(b"a").await.unwrap(), None);
    assert_eq!(pd.get_region_by_id(2).await.unwrap(), None);
    let m = EncodedKey::encode(b"m");
    fake.set_regions(split_regions(core::slice::from_ref(&m), &[1, 2]));
    let right = pd.get_region(b"z").await.unwrap().unwrap();
    assert_eq!((right.id(), right.start()), (2, &m));
    assert_eq!(right.leader().map(|p| p.store_id), Some(1));
    assert_eq!(pd.get_region_by_id(1).await.unwrap().unwrap().end(), &m);
}

#[tokio::test]
async fn garbage_from_pd_is_a_typed_error() {
    let fake = ScriptedPd::start(1, CLUSTER).await.unwrap();
    let pd = connect(&fake).await;
    let mut garbage = region(3, b"b", b"a", 1, &[1]);
    fake.set_regions([garbage.clone()]);
    let error = pd.get_region_by_id(3).await.unwrap_err();
    assert!(matches!(error, Error::InvalidRegion { region_id: 3, .. }), "{error:?}");
    garbage.leader = Some(metapb::Peer { id: 77, store_id: 1, ..Default::default() });
    garbage.region.as_mut().unwrap().end_key = bytes::Bytes::new();
    fake.set_regions([garbage]);
    let error = pd.get_region(b"c").await.unwrap_err();
    assert!(matches!(error, Error::InvalidRegion { region_id: 3, .. }), "{error:?}");
}

#[tokio::test]
async fn stores_by_id() {
    let fake = ScriptedPd::start(1, CLUSTER).await.unwrap();
    fake.put_store(store(1, "127.0.0.1:20160"));
    fake.put_store(metapb::Store {
        state: metapb::StoreState::Tombstone as i32,
        ..store(2, "127.0.0.1:20161")
    });
    let pd = connect(&fake).await;
    let one = pd.get_store(1).await.unwrap();
    assert_eq!(
        (&*one.address, one.state, &*one.version),
        ("127.0.0.1:20160", StoreState::Up, "8.1.0")
    );
    let error = pd.get_store(2).await.unwrap_err();
    assert!(matches!(error, Error::StoreTombstone { store_id: 2 }), "{error:?}");
    let error = pd.get_store(9).await.unwrap_err();
    assert!(matches!(error, Error::StoreNotFound { store_id: 9 }), "{error:?}");
    assert_eq!(pd.get_all_stores(true).await.unwrap().len(), 1);
    assert_eq!(pd.get_all_stores(false).await.unwrap().len(), 2);
}

#[tokio::test]
async fn batch_scan_regions_when_served_else_scan_regions() {
    let splits: Vec<EncodedKey> = (1..10u8).map(|i| EncodedKey::encode(&[i])).collect();
    for served in [false, true] {
        let fake = ScriptedPd::start(1, CLUSTER).await.unwrap();
        fake.set_regions(split_regions(&splits, &[1]));
        fake.with(|s| s.batch_scan = served);
        let pd = connect(&fake).await;
        for _ in 0..2 {
            let regions = pd.scan_regions(&Span::full(), 4).await.unwrap();
            assert_eq!(regions.iter().map(|r| r.id()).collect::<Vec<_>>(), [1, 2, 3, 4]);
        }
        let calls = fake.calls(0);
        if served {
            assert_eq!((calls.batch_scan_regions, calls.scan_regions), (2, 0));
        } else {
            // One UNIMPLEMENTED answer, then ScanRegions only.
            assert_eq!((calls.batch_scan_regions, calls.scan_regions), (1, 2));
        }
    }
}

#[tokio::test]
async fn legacy_scan_layout_is_accepted() {
    let fake = ScriptedPd::start(1, CLUSTER).await.unwrap();
    fake.set_regions(split_regions(&[EncodedKey::encode(b"m")], &[1, 2]));
    fake.with(|s| s.scan_layout = kvfeed_sim::ScanLayout::Legacy);
    let pd = connect(&fake).await;
    let regions = pd.scan_regions(&Span::full(), 10).await.unwrap();
    let leaders: Vec<_> = regions.iter().map(|r| r.leader().map(|p| p.store_id)).collect();
    assert_eq!(leaders, [Some(1), Some(1)]);
}

#[tokio::test]
async fn mutual_tls() {
    use kvfeed_regioncache::{ClientIdentity, TlsConfig};
    use kvfeed_sim::ServerTls;

    const CA: &[u8] = include_bytes!("../data/ca.pem");
    let tls = ServerTls {
        cert_pem: include_bytes!("../data/server.pem").to_vec(),
        key_pem: include_bytes!("../data/server.key").to_vec(),
        client_ca_pem: Some(CA.to_vec()),
    };
    let fake = ScriptedPd::start_tls(1, CLUSTER, tls).await.unwrap();
    fake.set_regions(split_regions(&[], &[1]));
    assert!(fake.urls()[0].starts_with("https://"));

    let mut with_tls = config(fake.urls());
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    with_tls.tls = Some(TlsConfig {
        ca_file: data.join("ca.pem"),
        client_identity: Some(ClientIdentity {
            cert_file: data.join("client.pem"),
            key_file: data.join("client.key"),
        }),
        domain_name: Some("localhost".to_owned()),
    });
    let pd = PdClient::connect(with_tls).await.unwrap();
    assert!(pd.get_region(b"").await.unwrap().is_some());
    assert!(pd.get_ts().await.unwrap() > 0);

    // Plain text against a TLS server does not get through.
    let mut plain = config(fake.addrs().to_vec());
    plain.retries = 0;
    let error = PdClient::connect(plain).await.unwrap_err();
    assert!(matches!(error, Error::Unavailable { .. } | Error::Timeout { .. }), "{error:?}");
}

/// A failed handshake is named as one and, before PD ever answered, returned without the
/// retries a down PD gets: a server certificate the CA does not vouch for, and plain text.
#[tokio::test]
async fn a_tls_handshake_failure_is_named_at_once() {
    use kvfeed_regioncache::TlsConfig;
    use kvfeed_sim::ServerTls;

    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let tls = ServerTls {
        cert_pem: include_bytes!("../data/server.pem").to_vec(),
        key_pem: include_bytes!("../data/server.key").to_vec(),
        client_ca_pem: None,
    };
    let fake = ScriptedPd::start_tls(1, CLUSTER, tls).await.unwrap();
    let plain = ScriptedPd::start(1, CLUSTER).await.unwrap();
    // A leaf certificate as the CA: the server's certificate does not chain to it.
    let cases = [
        (fake.urls(), "client.pem", "invalid peer certificate"),
        (plain.addrs().iter().map(|a| format!("https://{a}")).collect(), "ca.pem", "plain text"),
    ];
    for (urls, ca, expected) in cases {
        let mut with_tls = config(urls);
        // Were the failure retried, this would take minutes.
        with_tls.retries = 1000;
        with_tls.tls = Some(TlsConfig {
            ca_file: data.join(ca),
            client_identity: None,
            domain_name: Some("localhost".to_owned()),
        });
        match PdClient::connect(with_tls).await {
            Err(error @ Error::TlsHandshake { .. }) => {
                let text = error.to_string();
                assert!(text.starts_with("TLS handshake with 127.0.0.1:"), "{text}");
                assert!(text.contains(expected), "{text}");
            }
            other => panic!("expected a handshake failure, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_missing_tls_file_is_a_typed_error_naming_it() {
    let mut with_tls = config(["127.0.0.1:1".to_owned()]);
    let missing = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/missing.pem");
    with_tls.tls = Some(kvfeed_regioncache::TlsConfig::new(&missing));
    match PdClient::connect(with_tls).await {
        Err(Error::Tls(error)) => assert_eq!(error.path, missing),
        other => panic!("expected a TLS error, got {other:?}"),
    }
}

/// Service GC safe points over the wire, as PD keeps them: an update below the minimum is
/// refused (the answer names the minimum, above the asked ts), advancing is accepted, a TTL of 0
/// removes the point, and the GC worker's own service id cannot be set.
#[tokio::test]
async fn service_gc_safe_points() {
    let fake = ScriptedPd::start(1, CLUSTER).await.unwrap();
    let pd = connect(&fake).await;
    assert_eq!(pd.gc_safe_point().await.unwrap(), 0);
    let first = pd.update_service_safe_point("kvfeed-a", 60, 100).await.unwrap();
    assert!(!first.refuses(100), "{first:?}");
    assert_eq!(first.min_safe_point, 0, "the GC worker's point at 0 is the minimum");
    pd.update_service_safe_point("kvfeed-b", 60, 200).await.unwrap();
    // Lowering a point is accepted while it stays at or above the minimum (the GC worker's 0).
    let lower = pd.update_service_safe_point("kvfeed-b", 60, 50).await.unwrap();
    assert!(!lower.refuses(50));
    // Both removed; the GC worker's own id is reserved.
    for id in ["kvfeed-a", "kvfeed-b"] {
        pd.update_service_safe_point(id, 0, 0).await.unwrap();
    }
    let reserved = pd.update_service_safe_point(kvfeed_sim::GC_WORKER_SERVICE, 60, 5).await;
    assert!(matches!(reserved, Err(Error::Pd { .. })), "{reserved:?}");
    assert_eq!(fake.calls(0).gc_calls, 7);
}
