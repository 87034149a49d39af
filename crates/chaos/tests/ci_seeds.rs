//! The chaos subset `cargo xtask ci` runs: a few short seeds (longer soaks: `cargo xtask chaos`).

use std::time::Duration;

use kvfeed_chaos::{ChaosConfig, run_seed};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_seeds_keep_every_invariant() {
    for seed in 1..=4 {
        let outcome = run_seed(&ChaosConfig::new(seed, Duration::from_secs(5))).await.unwrap();
        assert!(
            outcome.violation.is_none(),
            "seed {seed}: {:?}\nfaults: {:?}",
            outcome.violation,
            outcome.faults
        );
        assert!(!outcome.faults.is_empty(), "seed {seed} injected faults");
        assert!(outcome.expected > 0, "seed {seed} checked rows");
        assert!(outcome.decoded_rows > 0, "seed {seed} checked decoded TiDB rows");
    }
}
