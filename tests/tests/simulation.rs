//! The deterministic simulation, run over many seeds within a time budget.
//!
//! - `simulation_budget`: seeds from `SIM_START` (default 0) until
//!   `SIM_SEEDS` seeds (default 10 000; 50 in debug builds) or `SIM_SECONDS`
//!   (default 180) have passed, whichever comes first. Prints seeds/s.
//! - `regressions`: every seed that once failed, kept forever.
//! - `replay`: the seed in `SIM_SEED`, with its stats.
//! - `long_run` (`--ignored`): a million seeds or `SIM_SECONDS` (default 1 h).

use std::time::Instant;

use cachearoo_tests::harness::{run_seed, RunStats};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Seeds that found bugs (see the README's simulation section for each):
/// - 29: a replier that missed a request (disconnected) took another
///   replier's reply for a new request.
/// - 76: a consumer that missed a job's delete event (disconnected) claimed
///   and worked the job again after another consumer had finished it.
/// - 428: the same double work without a disconnect: the claimer's remove of
///   the job was lost, so a waiting consumer never saw a delete.
const REGRESSIONS: &[u64] = &[29, 76, 428];

fn budget(default_seeds: u64, default_seconds: u64) {
    let start = env_u64("SIM_START", 0);
    let seeds = env_u64("SIM_SEEDS", default_seeds);
    let seconds = env_u64("SIM_SECONDS", default_seconds);
    let t0 = Instant::now();
    let mut total = RunStats::default();
    let mut n = 0u64;
    for seed in start..start + seeds {
        match run_seed(seed) {
            Ok(stats) => total += stats,
            Err(v) => panic!("{v}"),
        }
        n += 1;
        if t0.elapsed().as_secs() >= seconds {
            break;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "simulation: {n} seeds in {secs:.1} s ({:.0} seeds/s); {} ops, {} events, {} requests ({} replied), {} jobs ({} done), {} faults",
        n as f64 / secs,
        total.ops,
        total.events,
        total.requests,
        total.replies,
        total.jobs,
        total.jobs_done,
        total.faults
    );
}

/// 10 000 seeds or 3 minutes in release mode (the CI run); a quick 50
/// seeds in debug builds, where `cargo test --workspace` runs it too.
#[test]
fn simulation_budget() {
    if cfg!(debug_assertions) {
        budget(50, 60);
    } else {
        budget(10_000, 180);
    }
}

#[test]
fn regressions() {
    for &seed in REGRESSIONS {
        if let Err(v) = run_seed(seed) {
            panic!("{v}");
        }
    }
}

#[test]
fn replay() {
    let Ok(seed) = std::env::var("SIM_SEED") else {
        return;
    };
    let seed: u64 = seed.parse().expect("SIM_SEED is a u64");
    match run_seed(seed) {
        Ok(stats) => println!("seed {seed}: ok {stats:?}"),
        Err(v) => panic!("{v}"),
    }
}

#[test]
#[ignore = "long run: cargo test --release -p cachearoo-tests --test simulation long_run -- --ignored --nocapture"]
fn long_run() {
    budget(1_000_000, 3600);
}
