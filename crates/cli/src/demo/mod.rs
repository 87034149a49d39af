//! `kvfeed demo`: a simulated cluster, a seeded workload, faults with `--chaos`, a subscriber of
//! every table, live progress on stderr, and the verifier's verdict at the end. By default the
//! tables are TiDB tables watched decoded ([`tidb`]); `--raw` writes and checks raw keys
//! ([`raw`]). [`settings`] holds the arguments; [`drive`] runs the workload and the faults of
//! `--chaos` ([`crate::faults`]) on a seeded tick schedule.

mod drive;
mod raw;
mod settings;
mod tidb;

use std::sync::Arc;
use std::time::Duration;

use kvfeed::{Client, Config};
use kvfeed_sim::Cluster;

pub(crate) use settings::Args;

use crate::Failure;
use crate::layout;

pub(crate) async fn run(args: Args) -> Result<(), Failure> {
    if args.rate == 0 {
        return Err(Failure::usage("--rate must be at least 1"));
    }
    if args.duration == 0 {
        return Err(Failure::usage("--duration must be at least 1 (second)"));
    }
    layout::check_sizes(args.stores, args.regions, args.tables)?;
    let tables = layout::tables(args.tables);
    let cluster =
        Cluster::start(layout::cluster_config(args.stores, args.regions, &tables)).await.map_err(
            |error| Failure::runtime(format!("cannot start the simulated cluster: {error}")),
        )?;
    let cluster = Arc::new(cluster);
    let mut config = Config::new([cluster.pd_address()]);
    config.advance_interval = Duration::from_millis(100);
    config.lock_resolve_fence = Some(Duration::from_secs(2));
    config.lock_resolve_cooldown = Duration::from_secs(1);
    // `--chaos` wedges stores for a while: what they swallowed is asked again soon.
    config.region_stuck_timeout = Some(Duration::from_secs(2));
    let client = Client::connect(config).await.map_err(|error| {
        Failure::runtime(format!("cannot connect to the simulated PD: {error}"))
    })?;
    let runner = {
        let client = client.clone();
        tokio::spawn(async move { client.run().await })
    };
    // Each run prints its summary and says whether the verifier passed.
    let ok = if args.raw {
        raw::run(&args, Arc::clone(&cluster), client, runner).await?
    } else {
        tidb::run(&args, Arc::clone(&cluster), client, runner).await?
    };
    if let Ok(cluster) = Arc::try_unwrap(cluster) {
        cluster.shutdown().await;
    }
    if ok {
        Ok(())
    } else {
        Err(Failure::runtime("the verifier found violations (see the summary)"))
    }
}
