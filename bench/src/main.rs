//! End-to-end benchmarks of the Cachearoo client and server.
//!
//! ```text
//! cargo run --release -p cachearoo-bench -- [--addr HOST:PORT] [--json] [--smoke]
//!     [--secs S] [--only smol|async-std] [--figures 1,2,..] [--count N]
//! ```
//!
//! Starts `cachearoo-server` in-process (unless `--addr` names one), then
//! prints, for smol and for async-std, one line per figure:
//! `name value unit (ratio × baseline)`. Every baseline is measured in the
//! same run on the same machine (shared machines are noisy; ratios are what
//! travel). See BENCHMARKS.md for what each figure is and what limits it.
//!
//! `--smoke` runs every figure for a tiny fixed count: it checks the
//! harness, not the speed, and finishes in seconds. Numbers are never
//! asserted anywhere.

mod alloc;
mod coredrv;
mod echo;
mod figures;
mod raw;
mod report;
mod rt;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use report::Figure;
use rt::Rt;

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

/// Command line.
struct Args {
    addr: Option<SocketAddr>,
    json: bool,
    smoke: bool,
    secs: f64,
    only: Option<Rt>,
    /// Fixed count per timed loop (profiling).
    count: Option<u64>,
    /// Bit n set: run figure n.
    figures: u8,
    /// Internal: run as the idle-client child process of figure 7.
    idle_client: Option<(Rt, SocketAddr)>,
}

const USAGE: &str = "usage: cachearoo-bench [--addr HOST:PORT] [--json] [--smoke] [--secs S] [--only smol|async-std] [--figures 1,2,..] [--count N]";

/// Reports a command-line mistake and exits (status 2, like usage errors).
fn usage_error(message: String) -> ! {
    eprintln!("cachearoo-bench: {message}\n{USAGE}");
    std::process::exit(2);
}

fn parse_rt(s: &str) -> Rt {
    match s {
        "smol" => Rt::Smol,
        "async-std" => Rt::AsyncStd,
        other => usage_error(format!("unknown runtime {other:?} (smol or async-std)")),
    }
}

fn parse_addr(s: &str) -> SocketAddr {
    use std::net::ToSocketAddrs;
    s.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| usage_error(format!("cannot resolve {s:?} as HOST:PORT")))
}

fn args() -> Args {
    let mut a = Args {
        addr: None,
        json: false,
        smoke: false,
        secs: 1.5,
        only: None,
        figures: 0xfe,
        count: None,
        idle_client: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .unwrap_or_else(|| usage_error(format!("{name} needs a value")))
        };
        match arg.as_str() {
            "--addr" => a.addr = Some(parse_addr(&value("--addr"))),
            "--json" => a.json = true,
            "--smoke" => a.smoke = true,
            "--secs" => {
                a.secs = value("--secs")
                    .parse()
                    .unwrap_or_else(|_| usage_error(String::from("--secs takes seconds")))
            }
            "--count" => {
                a.count = Some(
                    value("--count")
                        .parse()
                        .unwrap_or_else(|_| usage_error(String::from("--count takes a number"))),
                )
            }
            "--only" => a.only = Some(parse_rt(&value("--only"))),
            "--figures" => {
                a.figures = 0;
                for n in value("--figures").split(',') {
                    match n.trim().parse::<u8>() {
                        Ok(n @ 1..=7) => a.figures |= 1 << n,
                        _ => usage_error(String::from("--figures takes numbers 1 to 7, e.g. 1,2")),
                    }
                }
            }
            "--idle-client" => {
                let rt = parse_rt(&value("--idle-client"));
                let addr = parse_addr(&value("--idle-client"));
                a.idle_client = Some((rt, addr));
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => usage_error(format!("unknown argument {other:?}")),
        }
    }
    a
}

fn main() {
    let args = args();
    if let Some((rt, addr)) = args.idle_client {
        idle_client_child(rt, addr);
        return;
    }
    let started = Instant::now();
    let server = match args.addr {
        Some(_) => None,
        None => Some(
            cachearoo_server::start(cachearoo_server::ServerConfig::default().port(0))
                .expect("start the in-process server"),
        ),
    };
    let addr = args
        .addr
        .or(server.as_ref().map(|s| s.addr()))
        .expect("a server address");
    let ctx = figures::Ctx {
        server: addr,
        smoke: args.smoke,
        duration: Duration::from_secs_f64(args.secs),
        figures: args.figures,
        count: args.count,
    };
    if !args.json {
        println!(
            "cachearoo-bench: server {addr}{}, {} s per timed loop{}",
            if server.is_some() {
                " (in-process)"
            } else {
                ""
            },
            args.secs,
            if args.smoke {
                " — SMOKE MODE: fixed tiny counts, the numbers mean nothing"
            } else {
                ""
            }
        );
        println!("load average before: {}", load_average());
    }
    let mut all: Vec<Figure> = Vec::new();
    for rt in Rt::ALL {
        if args.only.is_some_and(|o| o != rt) {
            continue;
        }
        let mut figs = Vec::new();
        rt.block_on(figures::throughput(rt, ctx, &mut figs));
        if ctx.wants(7) {
            rt.block_on(figures::memory(rt, ctx, &mut figs));
            figs.extend(idle_rss(rt, addr));
        }
        if !args.json {
            for f in &figs {
                println!("{}", f.line());
            }
        }
        all.extend(figs);
    }
    drop(server);
    if args.json {
        let doc = serde_json::json!({
            "smoke": args.smoke,
            "seconds_per_loop": args.secs,
            "load_average": load_average(),
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "figures": all.iter().map(Figure::to_json).collect::<Vec<_>>(),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("JSON of plain values")
        );
    } else {
        println!(
            "load average after: {}; took {:.1} s",
            load_average(),
            started.elapsed().as_secs_f64()
        );
    }
}

/// The 1/5/15-minute load averages, as `/proc/loadavg` has them.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| String::from("unknown"))
}

/// Idle client RSS: a child process (this binary) reports its RSS before
/// and after one client connected and sat idle, so the server and the
/// bench's own allocations are not in it.
fn idle_rss(rt: Rt, addr: SocketAddr) -> Option<Figure> {
    let exe = std::env::current_exe().expect("path of the bench binary");
    let out = std::process::Command::new(exe)
        .args(["--idle-client", rt.name(), &addr.to_string()])
        .output()
        .expect("run the idle-client child");
    assert!(
        out.status.success(),
        "idle-client child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut nums = text.split_whitespace().map(|n| n.parse::<f64>());
    let (Some(Ok(before)), Some(Ok(after))) = (nums.next(), nums.next()) else {
        // No procfs: nothing to report.
        return None;
    };
    Some(Figure {
        runtime: rt.name(),
        figure: 7,
        name: String::from("idle client process RSS"),
        value: after / 1024.0,
        unit: "KiB",
        baseline: Some((
            String::from("same process before the client"),
            before / 1024.0,
        )),
        note: Some(format!(
            "+{:.0} KiB for the client",
            (after - before) / 1024.0
        )),
    })
}

/// The child of [`idle_rss`]: prints `rss_before rss_after` in bytes.
fn idle_client_child(rt: Rt, addr: SocketAddr) {
    // Start the runtime itself first, so its threads count as "before".
    rt.block_on(rt.sleep(Duration::from_millis(20)));
    let before = alloc::rss_bytes();
    rt.block_on(async {
        let client = rt.client(cachearoo::Options::new().address(addr));
        client
            .connection()
            .wait_connected()
            .await
            .expect("idle client connects");
        rt.sleep(Duration::from_millis(300)).await;
        let after = alloc::rss_bytes();
        if let (Some(b), Some(a)) = (before, after) {
            println!("{b} {a}");
        }
        client.close().await;
    });
}
