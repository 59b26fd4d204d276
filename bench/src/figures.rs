//! The seven figures of issue 7, each written once and run on both
//! runtimes. Every timed loop is preceded by a short warm-up; every figure
//! carries the baseline it is compared with.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cachearoo::{Cachearoo, CompetingConsumer, Options, Producer, Replier, Requestor};
use cachearoo_core::{Event, JobAnswer, MessagingEvent, OpOptions, Operation};
use futures_lite::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde_json::{json, Value};

use crate::alloc::Window;
use crate::coredrv::CoreConn;
use crate::echo::{Mode, TinyServer};
use crate::raw::{self, Budget};
use crate::report::Figure;
use crate::rt::Rt;

/// What every figure needs to know.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    /// The Cachearoo server under test.
    pub server: SocketAddr,
    /// Tiny fixed counts (harness check), not timing.
    pub smoke: bool,
    /// Length of one timed loop.
    pub duration: Duration,
    /// Fixed operation count per timed loop instead of a duration (for
    /// profiling: per-operation costs are then totals divided by it).
    pub count: Option<u64>,
    /// Which figures to run (bit n = figure n), for profiling one alone.
    pub figures: u8,
}

impl Ctx {
    /// Whether figure `n` is to be run.
    pub fn wants(&self, n: u8) -> bool {
        self.figures & (1 << n) != 0
    }

    /// The budget of one timed loop.
    fn budget(&self) -> Budget {
        match (self.smoke, self.count) {
            (true, _) => Budget::Count(20),
            (false, Some(n)) => Budget::Count(n),
            (false, None) => Budget::Time(self.duration),
        }
    }

    /// Operations of warm-up before a timed loop.
    fn warmup(&self) -> u64 {
        if self.smoke {
            2
        } else {
            200
        }
    }

    fn spent(&self, meter: &Meter, count: u64) -> bool {
        match self.budget() {
            Budget::Time(d) => meter.elapsed() >= d,
            Budget::Count(n) => count >= n,
        }
    }
}

/// The small record every read returns and every write stores.
pub fn record() -> Value {
    json!({"make": "Saab", "model": "900 Turbo", "year": 1987, "tags": ["classic", "turbo"]})
}

/// A fresh seed for every core client: request and job keys are uuids
/// drawn from the seed, and two runs against one server must not reuse
/// them (a job key whose status key is still stored cannot be claimed).
fn seed() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    base ^ NEXT.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
}

fn rate(ops: u64, elapsed: Duration) -> f64 {
    ops as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// Wall clock and process CPU at the start of a timed loop.
#[derive(Debug, Clone, Copy)]
struct Meter {
    start: Instant,
    cpu: Option<f64>,
}

/// A timed loop's result: operations per second, and the CPU time the
/// whole process (client, server, bench) spent per operation.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rate {
    per_sec: f64,
    cpu_us: Option<f64>,
}

impl Meter {
    fn start() -> Meter {
        Meter {
            start: Instant::now(),
            cpu: crate::alloc::cpu_seconds(),
        }
    }

    fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// The rate of `ops` operations since the start.
    fn rate(&self, ops: u64) -> Rate {
        self.rate_over(ops, self.elapsed())
    }

    fn rate_over(&self, ops: u64, elapsed: Duration) -> Rate {
        let cpu_us = match (self.cpu, crate::alloc::cpu_seconds()) {
            // Below 5 clock ticks the figure is mostly rounding: omit it.
            (Some(a), Some(b)) if ops > 0 && b - a >= 0.05 => Some((b - a) * 1e6 / ops as f64),
            _ => None,
        };
        Rate {
            per_sec: rate(ops, elapsed),
            cpu_us,
        }
    }
}

fn options(addr: SocketAddr) -> Options {
    Options::new()
        .address(addr)
        .bucket("bench")
        .request_timeout(Duration::from_secs(30))
}

/// A connected client of the library.
async fn client(rt: Rt, addr: SocketAddr) -> Cachearoo {
    connected(rt, rt.client(options(addr)), addr).await
}

/// Waits (at most 10 s) until `c` is connected: the client retries for
/// ever, and a wrong `--addr` must not hang the bench.
async fn connected(rt: Rt, c: Cachearoo, addr: SocketAddr) -> Cachearoo {
    let wait = async { Some(c.connection().wait_connected().await) };
    let limit = async {
        rt.sleep(Duration::from_secs(10)).await;
        None
    };
    match futures_lite::future::or(wait, limit).await {
        Some(Ok(_)) => c,
        Some(Err(e)) => panic!("client to {addr} closed before connecting: {e}"),
        None => panic!("no connection to a Cachearoo server at {addr} within 10 s"),
    }
}

struct Fig<'a> {
    rt: Rt,
    out: &'a mut Vec<Figure>,
}

impl Fig<'_> {
    /// Records a figure; a rate's CPU per operation goes into its note.
    fn push(
        &mut self,
        figure: u8,
        name: impl Into<String>,
        value: Rate,
        unit: &'static str,
        baseline: Option<(&str, Rate)>,
    ) -> &mut Figure {
        self.out.push(Figure {
            runtime: self.rt.name(),
            figure,
            name: name.into(),
            value: value.per_sec,
            unit,
            baseline: baseline.map(|(n, v)| (n.to_string(), v.per_sec)),
            note: value
                .cpu_us
                .map(|us| format!("CPU {us:.1} µs/op, whole process")),
        });
        let last = self.out.len() - 1;
        &mut self.out[last]
    }
}

impl From<f64> for Rate {
    fn from(per_sec: f64) -> Rate {
        Rate {
            per_sec,
            cpu_us: None,
        }
    }
}

/// Figures 1–6 on one runtime (figure 7 is [`memory`]).
pub async fn throughput(rt: Rt, ctx: Ctx, out: &mut Vec<Figure>) {
    let mut f = Fig { rt, out };

    // ---- 1. the limit, then sequential reads ------------------------------
    let echo = TinyServer::start(Mode::Echo);
    let frame = raw::read_frame("bench", "k1");
    let c = client(rt, ctx.server).await;
    c.write("k1", &record()).await.expect("write k1");
    // Figure 4 is compared with the echo round trip too.
    let mut echo_rtt = Rate::default();
    if ctx.wants(1) || ctx.wants(4) {
        let ws = raw::connect(rt, echo.addr(), false).await;
        let _ = raw::pipelined(ws, &frame, 1, Budget::Count(ctx.warmup())).await;
        let ws = raw::connect(rt, echo.addr(), false).await;
        let meter = Meter::start();
        let (n, t) = raw::pipelined(ws, &frame, 1, ctx.budget()).await;
        echo_rtt = meter.rate_over(n, t);
        f.push(
            1,
            "raw WebSocket echo round trips (the limit)",
            echo_rtt,
            "rt/s",
            None,
        );
    }

    if ctx.wants(1) {
        let seq = sequential_reads(&c, ctx).await;
        f.push(
            1,
            "client read, sequential",
            seq,
            "ops/s",
            Some(("echo", echo_rtt)),
        );

        // The same loop run as a task of the runtime instead of from
        // `block_on` on the main thread: with smol's single executor thread
        // the caller and the driver task then share a thread, and no reply
        // has to wake another thread.
        let on_executor = {
            let c = c.clone();
            rt.spawn(async move { sequential_reads(&c, ctx).await })
        }
        .await;
        f.push(
            1,
            "client read, sequential, caller spawned on the runtime",
            on_executor,
            "ops/s",
            Some(("echo", echo_rtt)),
        );

        let mut core = CoreConn::connect(rt, ctx.server, seed()).await;
        let core_seq = core_sequential_reads(&mut core, ctx).await;
        f.push(
            1,
            "core-driven read, sequential (no async client layer)",
            core_seq,
            "ops/s",
            Some(("echo", echo_rtt)),
        );
    }

    // ---- 2. pipelining ----------------------------------------------------
    let mut sequential = Rate::default();
    for window in [1usize, 16, 64, 256] {
        if !ctx.wants(2) {
            break;
        }
        let v = pipelined_reads(&c, window, ctx).await;
        if window == 1 {
            sequential = v;
        }
        f.push(
            2,
            format!("client read, {window} in flight"),
            v,
            "ops/s",
            Some(("sequential", sequential)),
        );
    }
    c.close().await;

    // ---- 3. fan-out ---------------------------------------------------------
    let mut one = None;
    for listeners in [1usize, 8, 64] {
        if !ctx.wants(3) {
            break;
        }
        let (v, lost) = fan_out(rt, ctx, listeners).await;
        let base = *one.get_or_insert(v);
        let fig = f.push(
            3,
            format!("event fan-out, 1 writer → {listeners} listeners"),
            v,
            "ev/s",
            Some(("1 listener", base)),
        );
        if lost > 0 {
            fig.note = Some(format!("{lost} events not delivered"));
        }
    }

    // ---- 4. request–reply ----------------------------------------------------
    // Through the client's messaging API, and with the core's state machine
    // driven directly (no async layer) to show what that layer costs.
    if ctx.wants(4) {
        let seq_rr = request_reply(rt, ctx, 1).await;
        f.push(
            4,
            "request–reply, sequential",
            seq_rr,
            "rt/s",
            Some(("echo", echo_rtt)),
        );
        let rr16 = request_reply(rt, ctx, 16).await;
        f.push(
            4,
            "request–reply, 16 in flight",
            rr16,
            "rt/s",
            Some(("sequential", seq_rr)),
        );
        let core_seq = core_request_reply(rt, ctx, 1).await;
        f.push(
            4,
            "request–reply, sequential (core-driven)",
            core_seq,
            "rt/s",
            Some(("echo", echo_rtt)),
        );
        let core16 = core_request_reply(rt, ctx, 16).await;
        f.push(
            4,
            "request–reply, 16 in flight (core-driven)",
            core16,
            "rt/s",
            Some(("sequential", core_seq)),
        );
    }

    // ---- 5. competing consumers ----------------------------------------------
    // A consumer waits a random 0–20 ms before it asks about a job; with 4
    // consumers the first one fires after 20/5 = 4 ms on average, so
    // `in_flight / 4 ms` is what the protocol's spread alone allows.
    for in_flight in [1usize, 16] {
        if !ctx.wants(5) {
            break;
        }
        let bound = Rate::from(in_flight as f64 / 0.004);
        let v = competing_consumers(rt, ctx, 4, in_flight).await;
        f.push(
            5,
            format!("competing consumers, 1 producer × 4 consumers, {in_flight} in flight"),
            v,
            "jobs/s",
            Some(("spread bound", bound)),
        );
        let v = core_competing_consumers(rt, ctx, 4, in_flight).await;
        f.push(
            5,
            format!("competing consumers, 1 producer × 4 consumers, {in_flight} in flight (core-driven)"),
            v,
            "jobs/s",
            Some(("spread bound", bound)),
        );
    }

    // ---- 6. the server alone ----------------------------------------------------
    for conns in [1usize, 8, 64] {
        if !ctx.wants(6) {
            break;
        }
        let base = raw_load(rt, ctx, echo.addr(), false, conns, &frame).await;
        let v = raw_load(rt, ctx, ctx.server, true, conns, &frame).await;
        f.push(
            6,
            format!("server alone, {conns} raw connections × 16 in flight, read"),
            v,
            "ops/s",
            Some(("echo", base)),
        );
    }
    if ctx.wants(6) {
        let wframe = raw::write_frame("bench", "w1", &record().to_string());
        let base = raw_load(rt, ctx, echo.addr(), false, 8, &wframe).await;
        let v = raw_load(rt, ctx, ctx.server, true, 8, &wframe).await;
        f.push(
            6,
            "server alone, 8 raw connections × 16 in flight, write",
            v,
            "ops/s",
            Some(("echo", base)),
        );
    }
    drop(echo);
}

async fn sequential_reads(c: &Cachearoo, ctx: Ctx) -> Rate {
    for _ in 0..ctx.warmup() {
        let _: Value = c.read("k1").await.expect("read k1");
    }
    let meter = Meter::start();
    let mut n = 0;
    while !ctx.spent(&meter, n) {
        let v: Value = c.read("k1").await.expect("read k1");
        debug_assert!(v.is_object());
        n += 1;
    }
    meter.rate(n)
}

async fn core_sequential_reads(core: &mut CoreConn, ctx: Ctx) -> Rate {
    core_reads(core, Budget::Count(ctx.warmup())).await;
    core_reads(core, ctx.budget()).await
}

/// Sequential reads through the core driven directly; reads per second.
async fn core_reads(core: &mut CoreConn, budget: Budget) -> Rate {
    let meter = Meter::start();
    let mut n = 0u64;
    while match budget {
        Budget::Time(d) => meter.elapsed() < d,
        Budget::Count(c) => n < c,
    } {
        let now = core.now();
        let op = core.core.submit(
            now,
            Operation::Read { key: "k1".into() },
            OpOptions::default(),
        );
        'wait: loop {
            core.pump().await;
            while let Some(e) = core.core.poll_event() {
                if let Event::Completed { op: done, result } = e {
                    assert!(result.is_ok(), "core read failed: {result:?}");
                    if done == op {
                        break 'wait;
                    }
                }
            }
        }
        n += 1;
    }
    meter.rate(n)
}

async fn pipelined_reads(c: &Cachearoo, window: usize, ctx: Ctx) -> Rate {
    let warm = ctx.warmup().max(window as u64 * 2);
    let run = |budget: Budget| async move {
        let meter = Meter::start();
        let mut in_flight = FuturesUnordered::new();
        let (mut sent, mut done) = (0u64, 0u64);
        let may_send = |sent: u64| match budget {
            Budget::Time(d) => meter.elapsed() < d,
            Budget::Count(n) => sent < n,
        };
        loop {
            while in_flight.len() < window && may_send(sent) {
                in_flight.push(c.read::<Value>("k1").into_future());
                sent += 1;
            }
            match in_flight.next().await {
                Some(r) => {
                    r.expect("pipelined read");
                    done += 1;
                }
                None => break,
            }
        }
        meter.rate(done)
    };
    run(Budget::Count(warm)).await;
    run(ctx.budget()).await
}

/// One writer, `listeners` listening clients; events delivered per second
/// (all listeners together) and the number not delivered.
async fn fan_out(rt: Rt, ctx: Ctx, listeners: usize) -> (Rate, u64) {
    let events: u64 = if ctx.smoke {
        5
    } else {
        // About the same total work at every listener count.
        (20_000 / listeners as u64).clamp(200, 5_000)
    };
    let writer = client(rt, ctx.server).await;
    let mut clients = Vec::new();
    let mut tasks = Vec::new();
    let (ready_tx, ready_rx) = async_channel::unbounded::<()>();
    for _ in 0..listeners {
        let c = connected(
            rt,
            rt.client(options(ctx.server).listener_capacity(events as usize + 16)),
            ctx.server,
        )
        .await;
        let mut stream = c
            .connection()
            .add_listener("fan", "*", true)
            .await
            .expect("add listener");
        // A round trip after the registration: the server handles one
        // connection's frames in order, so the listener is in place.
        let _: Option<Value> = c.read("nothing").await.ok();
        clients.push(c);
        let ready = ready_tx.clone();
        tasks.push(rt.spawn(async move {
            let _ = ready.send(()).await;
            let mut got = 0u64;
            while got < events {
                match stream.next().await {
                    Some(Ok(_)) => got += 1,
                    Some(Err(lagged)) => panic!("listener lagged: {lagged}"),
                    None => break,
                }
            }
            got
        }));
    }
    for _ in 0..listeners {
        let _ = ready_rx.recv().await;
    }
    let meter = Meter::start();
    let value = record();
    let mut in_flight = FuturesUnordered::new();
    let mut sent = 0u64;
    loop {
        while in_flight.len() < 16 && sent < events {
            in_flight.push(
                writer
                    .write(format!("k{}", sent % 64), &value)
                    .bucket("fan")
                    .into_future(),
            );
            sent += 1;
        }
        match in_flight.next().await {
            Some(r) => {
                r.expect("fan-out write");
            }
            None => break,
        }
    }
    // Every listener should get every event; give stragglers a bounded
    // time, then count what did not arrive.
    let mut delivered = 0u64;
    let deadline = rt.sleep(Duration::from_secs(if ctx.smoke { 10 } else { 30 }));
    let all = async {
        let mut total = 0;
        for t in tasks {
            total += t.await;
        }
        Some(total)
    };
    if let Some(total) = futures_lite::future::or(all, async {
        deadline.await;
        None
    })
    .await
    {
        delivered = total;
    }
    let elapsed = meter.elapsed();
    let expected = events * listeners as u64;
    for c in clients {
        c.close().await;
    }
    writer.close().await;
    (
        meter.rate_over(delivered, elapsed),
        expected.saturating_sub(delivered),
    )
}

/// A round trip on `c`'s connection: everything it sent before (such as
/// a subscription) has been handled by the server when this returns.
async fn settle(c: &Cachearoo) {
    let _: Option<Value> = c.read("nothing").await.ok();
}

/// Request–reply round trips per second through the client's messaging
/// API: a `Requestor` and a `Replier` on two clients, `window` requests in
/// flight.
async fn request_reply(rt: Rt, ctx: Ctx, window: usize) -> Rate {
    let channel = format!("bench-api-{}-{window}", rt.name());
    let answering = client(rt, ctx.server).await;
    let mut replier = Replier::new(&answering, channel.as_str())
        .await
        .expect("create replier");
    replier.serve(
        64,
        |message, _progress| async move { Ok::<_, Value>(message) },
    );
    settle(&answering).await;
    let asking = client(rt, ctx.server).await;
    let requestor = Requestor::new(
        &asking,
        channel.as_str(),
        Duration::from_secs(30),
        Duration::from_secs(30),
    )
    .await
    .expect("create requestor");
    settle(&asking).await;

    let run = |budget: Budget| {
        let requestor = &requestor;
        async move {
            let meter = Meter::start();
            let mut in_flight = FuturesUnordered::new();
            let (mut sent, mut done) = (0u64, 0u64);
            let may_send = |sent: u64| match budget {
                Budget::Time(d) => meter.elapsed() < d,
                Budget::Count(n) => sent < n,
            };
            loop {
                while in_flight.len() < window && may_send(sent) {
                    let message = json!({ "n": sent });
                    in_flight.push(async move { requestor.request::<_, Value>(&message).await });
                    sent += 1;
                }
                match in_flight.next().await {
                    Some(r) => {
                        r.expect("request answered");
                        done += 1;
                    }
                    None => break,
                }
            }
            meter.rate(done)
        }
    };
    run(Budget::Count(ctx.warmup().min(50))).await;
    let v = run(ctx.budget()).await;
    drop(requestor);
    drop(replier);
    asking.close().await;
    answering.close().await;
    v
}

/// Request–reply round trips per second with `window` requests in flight:
/// a requestor and a replier on two connections, through the server.
async fn core_request_reply(rt: Rt, ctx: Ctx, window: usize) -> Rate {
    let channel = format!("bench-core-{}-{window}", rt.name());
    let mut replier = CoreConn::connect(rt, ctx.server, seed()).await;
    let now = replier.now();
    replier.core.create_replier(now, &channel);
    replier.sync().await;
    let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
    let replier_task = rt.spawn(async move {
        let serve = async {
            loop {
                replier.pump().await;
                while let Some(e) = replier.core.poll_event() {
                    if let Event::Messaging(MessagingEvent::IncomingRequest {
                        incoming,
                        message,
                        ..
                    }) = e
                    {
                        let now = replier.now();
                        replier
                            .core
                            .reply(now, incoming, Ok(message))
                            .expect("reply sent");
                    }
                }
            }
        };
        futures_lite::future::or(serve, async {
            let _ = stop_rx.recv().await;
        })
        .await;
    });

    let mut requestor = CoreConn::connect(rt, ctx.server, seed()).await;
    let now = requestor.now();
    let id = requestor.core.create_requestor(
        now,
        &channel,
        Duration::from_secs(30),
        Duration::from_secs(30),
    );
    requestor.sync().await;
    requests(
        &mut requestor,
        id,
        window,
        Budget::Count(ctx.warmup().min(50)),
    )
    .await;
    let v = requests(&mut requestor, id, window, ctx.budget()).await;
    requestor.sync().await;
    drop(stop_tx);
    replier_task.await;
    v
}

/// Keeps `window` requests open until the budget is spent; replies/s.
async fn requests(
    requestor: &mut CoreConn,
    id: cachearoo_core::RequestorId,
    window: usize,
    budget: Budget,
) -> Rate {
    let meter = Meter::start();
    let (mut sent, mut done, mut in_flight) = (0u64, 0u64, 0usize);
    let may_send = |sent: u64| match budget {
        Budget::Time(d) => meter.elapsed() < d,
        Budget::Count(n) => sent < n,
    };
    loop {
        while in_flight < window && may_send(sent) {
            let now = requestor.now();
            requestor.core.request(now, id, json!({ "n": sent }));
            sent += 1;
            in_flight += 1;
        }
        if in_flight == 0 {
            break;
        }
        requestor.pump().await;
        while let Some(e) = requestor.core.poll_event() {
            if let Event::Messaging(MessagingEvent::RequestDone { result, .. }) = e {
                result.expect("request answered");
                done += 1;
                in_flight -= 1;
            }
        }
    }
    meter.rate(done)
}

/// Jobs per second through the client's messaging API: one `Producer`
/// keeping `in_flight` jobs open and `consumers` `CompetingConsumer`s
/// (separate clients) whose work function answers at once.
async fn competing_consumers(rt: Rt, ctx: Ctx, consumers: usize, in_flight: usize) -> Rate {
    let channel = format!("bench-api-{}-{in_flight}", rt.name());
    let mut workers = Vec::new();
    for i in 0..consumers {
        let c = client(rt, ctx.server).await;
        let mut consumer =
            CompetingConsumer::with_id(&c, channel.as_str(), format!("consumer-{i}"))
                .await
                .expect("create consumer");
        consumer.serve(in_flight, |_job, _progress| async move {
            Ok::<_, Value>(json!({"ok": true}))
        });
        settle(&c).await;
        workers.push((c, consumer));
    }
    let pc = client(rt, ctx.server).await;
    let producer = Producer::new(
        &pc,
        channel.as_str(),
        Duration::from_secs(30),
        Duration::from_secs(30),
    )
    .await
    .expect("create producer");
    settle(&pc).await;

    let run = |budget: Budget| {
        let producer = &producer;
        async move {
            let meter = Meter::start();
            let mut open = FuturesUnordered::new();
            let (mut sent, mut done) = (0u64, 0u64);
            let may_send = |sent: u64| match budget {
                Budget::Time(d) => meter.elapsed() < d,
                Budget::Count(n) => sent < n,
            };
            loop {
                while open.len() < in_flight && may_send(sent) {
                    let job = json!({ "job": sent });
                    open.push(async move { producer.add_job::<_, Value>(&job).await });
                    sent += 1;
                }
                match open.next().await {
                    Some(r) => {
                        r.expect("job done");
                        done += 1;
                    }
                    None => break,
                }
            }
            meter.rate(done)
        }
    };
    run(Budget::Count(if ctx.smoke { 2 } else { 20 })).await;
    let budget = match ctx.budget() {
        Budget::Count(_) => Budget::Count(5),
        b => b,
    };
    let v = run(budget).await;
    // The producer removes each done job's status key: let those removes
    // reach the server before the client closes.
    settle(&pc).await;
    drop(producer);
    pc.close().await;
    for (c, consumer) in workers {
        drop(consumer);
        c.close().await;
    }
    v
}

/// Jobs per second with one producer keeping `in_flight` jobs open and
/// `consumers` consumers competing for them (each accepts every job and
/// finishes it at once).
async fn core_competing_consumers(rt: Rt, ctx: Ctx, consumers: usize, in_flight: usize) -> Rate {
    let channel = format!("bench-core-{}-{in_flight}", rt.name());
    let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
    let mut tasks = Vec::new();
    for i in 0..consumers {
        let mut conn = CoreConn::connect(rt, ctx.server, seed()).await;
        let now = conn.now();
        conn.core
            .create_consumer(now, &channel, Some(&format!("consumer-{i}")));
        conn.sync().await;
        let stop = stop_rx.clone();
        tasks.push(rt.spawn(async move {
            let work = async {
                loop {
                    conn.pump().await;
                    while let Some(e) = conn.core.poll_event() {
                        let now = conn.now();
                        match e {
                            Event::Messaging(MessagingEvent::JobQuery { task, .. }) => {
                                conn.core.answer_job_query(now, task, JobAnswer::Accept)
                            }
                            Event::Messaging(MessagingEvent::JobStarted { task, .. }) => conn
                                .core
                                .job_done(now, task, Ok(json!({"ok": true})))
                                .expect("job done sent"),
                            _ => {}
                        }
                    }
                }
            };
            futures_lite::future::or(work, async {
                let _ = stop.recv().await;
            })
            .await;
        }));
    }
    let mut producer = CoreConn::connect(rt, ctx.server, seed()).await;
    let now = producer.now();
    let id = producer.core.create_producer(
        now,
        &channel,
        Duration::from_secs(30),
        Duration::from_secs(30),
    );
    producer.sync().await;
    let warm = Budget::Count(if ctx.smoke { 2 } else { 20 });
    jobs(&mut producer, id, in_flight, warm).await;
    let budget = match ctx.budget() {
        Budget::Count(_) => Budget::Count(5),
        b => b,
    };
    let v = jobs(&mut producer, id, in_flight, budget).await;
    // The producer removes each done job's status key: let those removes
    // reach the server before the connection is dropped.
    producer.sync().await;
    drop(stop_tx);
    for t in tasks {
        t.await;
    }
    v
}

/// Keeps `in_flight` jobs open until the budget is spent; jobs/s.
async fn jobs(
    producer: &mut CoreConn,
    id: cachearoo_core::ProducerId,
    in_flight: usize,
    budget: Budget,
) -> Rate {
    let meter = Meter::start();
    let (mut sent, mut done, mut open) = (0u64, 0u64, 0usize);
    let may_send = |sent: u64| match budget {
        Budget::Time(d) => meter.elapsed() < d,
        Budget::Count(n) => sent < n,
    };
    loop {
        while open < in_flight && may_send(sent) {
            let now = producer.now();
            producer.core.add_job(now, id, json!({ "job": sent }));
            sent += 1;
            open += 1;
        }
        if open == 0 {
            break;
        }
        producer.pump().await;
        while let Some(e) = producer.core.poll_event() {
            if let Event::Messaging(MessagingEvent::JobDone { result, .. }) = e {
                result.expect("job done");
                done += 1;
                open -= 1;
            }
        }
    }
    meter.rate(done)
}

/// Raw clients, `conns` connections with 16 frames in flight each, against
/// `addr`; total answers per second.
async fn raw_load(
    rt: Rt,
    ctx: Ctx,
    addr: SocketAddr,
    greeted: bool,
    conns: usize,
    frame: &str,
) -> Rate {
    let mut wss = Vec::new();
    for _ in 0..conns {
        wss.push(raw::connect(rt, addr, greeted).await);
    }
    // Warm up on one connection (fills the store key for reads, too).
    let warm = raw::connect(rt, addr, greeted).await;
    raw::pipelined(warm, frame, 16, Budget::Count(ctx.warmup())).await;
    let budget = ctx.budget();
    let meter = Meter::start();
    let tasks: Vec<_> = wss
        .into_iter()
        .map(|ws| {
            let frame = frame.to_string();
            rt.spawn(async move { raw::pipelined(ws, &frame, 16, budget).await })
        })
        .collect();
    let (mut total, mut longest) = (0u64, Duration::ZERO);
    for t in tasks {
        let (n, e) = t.await;
        total += n;
        longest = longest.max(e);
    }
    meter.rate_over(total, longest)
}

/// Figure 7 on one runtime: bytes per pending operation and per listener
/// (counted by the bench's allocator), for the whole client and for the
/// core alone.
pub async fn memory(rt: Rt, ctx: Ctx, out: &mut Vec<Figure>) {
    let mut f = Fig { rt, out };
    let n: usize = if ctx.smoke { 50 } else { 2_000 };

    // Pending operations: a server that greets and never answers.
    let silent = TinyServer::start(Mode::Silent);
    let c = client(rt, silent.addr()).await;
    let before = silent.received();
    let window = Window::start();
    let holder = {
        let c = c.clone();
        rt.spawn(async move {
            let mut pending: FuturesUnordered<_> = (0..n)
                .map(|i| c.read::<Value>(format!("key-{i}")).into_future())
                .collect();
            let mut closed = 0;
            while let Some(r) = pending.next().await {
                if r.is_err() {
                    closed += 1;
                }
            }
            closed
        })
    };
    let waited = Instant::now();
    while silent.received() < before + n as u64 {
        assert!(
            waited.elapsed() < Duration::from_secs(30),
            "the silent server saw only {} of {n} requests",
            silent.received() - before
        );
        rt.sleep(Duration::from_millis(5)).await;
    }
    // Let the frames leave the write buffers.
    rt.sleep(Duration::from_millis(100)).await;
    let per_op = window.live() as f64 / n as f64;
    drop(window);
    f.push(
        7,
        "memory per pending read (client, incl. caller's future)",
        per_op.into(),
        "B",
        None,
    );
    c.close().await;
    let failed = holder.await;
    assert_eq!(failed, n, "every pending read fails when the client closes");
    drop(silent);

    // The core's share: the same operations submitted to the state machine.
    let window = Window::start();
    let mut core = cachearoo_core::Client::new(
        cachearoo_core::Config::default(),
        1,
        cachearoo_core::Instant::ZERO,
    );
    let socket = match core.poll_transmit() {
        Some(cachearoo_core::Transmit::Connect { socket, .. }) => socket,
        other => panic!("expected connect, got {other:?}"),
    };
    let t0 = cachearoo_core::Instant::ZERO;
    core.handle_socket_opened(t0, socket);
    core.handle_text(t0, socket, r#"{"id":"s"}"#);
    while core.poll_event().is_some() {}
    let base = window.live();
    for i in 0..n {
        core.submit(
            t0,
            Operation::Read {
                key: format!("key-{i}"),
            },
            OpOptions::default(),
        );
        // The driver takes the frame at once; only the pending state stays.
        let _ = core.poll_transmit();
    }
    let core_op = (window.live() - base) as f64 / n as f64;
    f.push(
        7,
        "memory per pending read (core only)",
        core_op.into(),
        "B",
        None,
    );

    let base = window.live();
    let ids: Vec<_> = (0..n)
        .map(|i| core.add_listener(t0, "b", &format!("key-{i}"), true))
        .collect();
    while core.poll_transmit().is_some() {}
    let core_listener = (window.live() - base) as f64 / n as f64;
    drop(ids);
    drop(core);
    drop(window);

    // Listeners on a connected client (each a stream with its queue).
    let c = client(rt, ctx.server).await;
    let window = Window::start();
    let mut streams = Vec::with_capacity(n);
    for i in 0..n {
        streams.push(
            c.connection()
                .add_listener("mem", format!("key-{i}"), true)
                .await
                .expect("add listener"),
        );
    }
    // The last registration (the full list each time) has gone out when a
    // later round trip returns.
    let _: Option<Value> = c.read("nothing").await.ok();
    rt.sleep(Duration::from_millis(50)).await;
    let per_listener = window.live() as f64 / n as f64;
    drop(window);
    f.push(
        7,
        "memory per listener (client, incl. its stream queue)",
        per_listener.into(),
        "B",
        None,
    )
    .note = Some(String::from("default listener_capacity 256"));
    f.push(
        7,
        "memory per listener (core only)",
        core_listener.into(),
        "B",
        None,
    );
    drop(streams);
    c.close().await;
}
