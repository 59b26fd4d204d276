//! The randomized simulation: a workload of every client feature
//! interleaved with network and server faults, checked against the
//! invariants of the client and the messaging patterns.
//!
//! Everything derives from one `u64` seed; [`run_seed`] returns a
//! [`Violation`] naming the seed so a failure can be replayed with
//! `SIM_SEED=<seed> cargo test --release -p cachearoo-tests --test simulation replay`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use cachearoo_core::rng::Prng;
use cachearoo_core::wire::ChangeEvent;
use cachearoo_core::{
    Backoff, Config, ConsumerId, Event, IncomingId, Instant, JobAnswer, JobId, ListenerId,
    MessagingError, MessagingEvent, OpError, OpId, OpOptions, Operation, ProducerId, ReplierId,
    Reply, RequestId, RequestorId, TaskId,
};
use serde_json::{json, Value};

use crate::sim::{NetConfig, World};

/// An invariant that did not hold, with the seed that shows it.
#[derive(Debug, Clone)]
pub struct Violation {
    /// The seed of the run.
    pub seed: u64,
    /// Virtual time of the finding.
    pub at: Duration,
    /// What went wrong.
    pub what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {} at {:?}: {}\n  replay: SIM_SEED={} cargo test --release -p cachearoo-tests --test simulation replay -- --nocapture",
            self.seed, self.at, self.what, self.seed
        )
    }
}

/// What one run did (for rates and coverage).
#[derive(Debug, Clone, Copy, Default)]
pub struct RunStats {
    /// Datastore operations issued.
    pub ops: u64,
    /// Change events routed to listeners.
    pub events: u64,
    /// Requests sent.
    pub requests: u64,
    /// Replies received.
    pub replies: u64,
    /// Jobs added.
    pub jobs: u64,
    /// Jobs done successfully.
    pub jobs_done: u64,
    /// Faults injected.
    pub faults: u64,
}

impl std::ops::AddAssign for RunStats {
    fn add_assign(&mut self, o: RunStats) {
        self.ops += o.ops;
        self.events += o.events;
        self.requests += o.requests;
        self.replies += o.replies;
        self.jobs += o.jobs;
        self.jobs_done += o.jobs_done;
        self.faults += o.faults;
    }
}

#[derive(Debug)]
struct OpRec {
    kind: &'static str,
    /// Unique marker of the value written or the patch applied.
    tag: Option<String>,
    resolved: Option<(Instant, Result<Reply, OpError>)>,
}

#[derive(Debug, Default)]
struct Model {
    client_id: String,
    closed: bool,
    /// Listeners: bucket, key, and whether they asked for values.
    listeners: BTreeMap<ListenerId, (String, String, bool)>,
    ops: BTreeMap<OpId, OpRec>,
    seen: BTreeSet<String>,
    requestor: Option<RequestorId>,
    replier: Option<ReplierId>,
    producer: Option<ProducerId>,
    consumer: Option<ConsumerId>,
    free_workers: usize,
    requests: BTreeMap<RequestId, (Value, Option<Result<Value, MessagingError>>)>,
    jobs: BTreeMap<JobId, (Value, Option<Result<Value, MessagingError>>)>,
    /// Tasks accepted and waiting for JobStarted / JobLost.
    accepted: BTreeSet<TaskId>,
    working: BTreeMap<TaskId, Instant>,
    replies_due: Vec<(Instant, IncomingId, Value)>,
}

const BUCKETS: [&str; 2] = ["b0", "b1"];
const KEYS: [&str; 4] = ["k0", "k1", "k2", ""];
const LISTEN: [&str; 3] = ["*", "b0", "b1"];
const LISTEN_KEYS: [&str; 3] = ["*", "k0", "k1"];

struct Run {
    seed: u64,
    rng: Prng,
    w: World,
    m: Vec<Model>,
    stats: RunStats,
    /// How many consumers started each job (by its payload's tag).
    started: BTreeMap<String, u32>,
    heal_at: Vec<(Instant, Fault)>,
    counter: u64,
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    StartServer,
    AcceptWs,
}

impl Run {
    fn fail(&self, what: impl Into<String>) -> Violation {
        Violation {
            seed: self.seed,
            at: self.w.now.since_epoch(),
            what: what.into(),
        }
    }

    fn tag(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}{}", self.counter)
    }

    fn chance(&mut self, per_mille: u64) -> bool {
        self.rng.below_inclusive(999) < per_mille
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.rng.below_inclusive(items.len() as u64 - 1) as usize]
    }

    /// One random action of client `i`.
    fn act(&mut self, i: usize) -> Result<(), Violation> {
        let now = self.w.now;
        if self.m[i].closed {
            // After close() every operation fails at once.
            let op = self.w.clients[i].core.submit(
                now,
                Operation::Read { key: "k0".into() },
                OpOptions::default(),
            );
            self.w.pump_client(i);
            let last = self.w.clients[i].events.pop();
            match last {
                Some(Event::Completed {
                    op: o,
                    result: Err(OpError::Closed),
                }) if o == op => return Ok(()),
                other => {
                    return Err(self.fail(format!("op after close did not fail at once: {other:?}")))
                }
            }
        }
        let roll = self.rng.below_inclusive(99);
        let bucket = self.pick(&BUCKETS).to_string();
        let key = self.pick(&KEYS).to_string();
        let force_http = self.chance(100);
        let options = OpOptions {
            bucket: Some(bucket.clone()),
            force_http,
        };
        let (op, kind, tag) = match roll {
            0..=29 => {
                let tag = self.tag("w");
                let fail_if_exists = self.chance(200);
                let expire_session = self.chance(100);
                (
                    Operation::Write {
                        key,
                        value: Some(json!({ "tag": tag })),
                        fail_if_exists,
                        expire_session,
                    },
                    "write",
                    Some(tag),
                )
            }
            30..=44 => (Operation::Read { key }, "read", None),
            45..=51 => (
                Operation::List {
                    keys_only: self.chance(500),
                    filter: self.chance(300).then(|| "k".to_string()),
                },
                "list",
                None,
            ),
            52..=61 if !key.is_empty() => {
                let tag = self.tag("p");
                (
                    Operation::Patch {
                        key,
                        patch: json!([{"op": "add", "path": "/p", "value": tag}]),
                        remove_data_from_reply: self.chance(300),
                    },
                    "patch",
                    Some(tag),
                )
            }
            62..=69 if !key.is_empty() => (Operation::Remove { key }, "remove", None),
            70..=76 => {
                let b = self.pick(&LISTEN).to_string();
                let k = self.pick(&LISTEN_KEYS).to_string();
                let values = self.chance(800);
                let id = self.w.clients[i].core.add_listener(now, &b, &k, values);
                self.m[i].listeners.insert(id, (b, k, values));
                self.w.pump_client(i);
                return Ok(());
            }
            77..=80 => {
                let ids: Vec<ListenerId> = self.m[i].listeners.keys().copied().collect();
                if !ids.is_empty() {
                    let id = *self.pick(&ids);
                    self.m[i].listeners.remove(&id);
                    if !self.w.clients[i].core.remove_listener(now, id) {
                        return Err(self.fail("remove_listener of a live listener returned false"));
                    }
                    self.w.pump_client(i);
                }
                return Ok(());
            }
            81..=85 => {
                let tag = self.tag("s");
                let connected = self.w.clients[i].core.is_connected();
                let r = self.w.clients[i].core.signal_event(
                    now,
                    &bucket,
                    "k0",
                    Some(json!({ "tag": tag })),
                );
                if r.is_ok() != connected {
                    return Err(self.fail(format!(
                        "signal_event returned {r:?} while connected={connected}"
                    )));
                }
                self.w.pump_client(i);
                return Ok(());
            }
            86..=87 => {
                let _ = self.w.clients[i]
                    .core
                    .send_binary(now, 7, &bucket, "k1", b"payload");
                self.w.pump_client(i);
                return Ok(());
            }
            88..=93 => return self.messaging_action(i),
            _ => {
                let _ = self.w.clients[i].core.ping(now);
                self.w.pump_client(i);
                return Ok(());
            }
        };
        let id = self.w.clients[i].core.submit(now, op, options);
        self.m[i].ops.insert(
            id,
            OpRec {
                kind,
                tag,
                resolved: None,
            },
        );
        self.stats.ops += 1;
        self.w.pump_client(i);
        Ok(())
    }

    fn messaging_action(&mut self, i: usize) -> Result<(), Violation> {
        let now = self.w.now;
        let ask = self.chance(500);
        if let Some(r) = self.m[i].requestor.filter(|_| ask) {
            let msg = json!({ "ask": self.tag("q") });
            let id = self.w.clients[i].core.request(now, r, msg.clone());
            self.m[i].requests.insert(id, (msg, None));
            self.stats.requests += 1;
        } else if let Some(p) = self.m[i].producer {
            // Jobs come in bursts, so consumers run out of workers and
            // have to wait (NO_WORKER_AVAILABLE) while faults happen.
            for _ in 0..1 + self.rng.below_inclusive(4) {
                let job = json!({ "job": self.tag("j") });
                let id = self.w.clients[i].core.add_job(now, p, job.clone());
                self.m[i].jobs.insert(id, (job, None));
                self.stats.jobs += 1;
            }
        }
        self.w.pump_client(i);
        Ok(())
    }

    fn fault(&mut self) {
        let now = self.w.now;
        let n = self.w.clients.len();
        self.stats.faults += 1;
        match self.rng.below_inclusive(5) {
            0 | 1 => {
                let i = self.rng.below_inclusive(n as u64 - 1) as usize;
                self.w.drop_connection(i);
            }
            2 => {
                let keep = self.chance(700);
                self.w.restart_server(keep);
            }
            3 => {
                if self.w.server_up() {
                    self.w.stop_server();
                    let d = Duration::from_millis(300 + self.rng.below_inclusive(4000));
                    self.heal_at.push((now + d, Fault::StartServer));
                }
            }
            4 => {
                self.w.set_refuse_ws(true);
                for i in 0..n {
                    if self.chance(500) {
                        self.w.drop_connection(i);
                    }
                }
                let d = Duration::from_millis(500 + self.rng.below_inclusive(4000));
                self.heal_at.push((now + d, Fault::AcceptWs));
            }
            _ => {
                let i = self.rng.below_inclusive(n as u64 - 1) as usize;
                self.w.half_open(i);
            }
        }
    }

    /// Consumes every event the clients emitted, checking them.
    fn observe(&mut self) -> Result<(), Violation> {
        for i in 0..self.w.clients.len() {
            let mut events = self.w.take_events(i).into_iter().peekable();
            while let Some(e) = events.next() {
                // One frame may give two copies back to back: without the
                // value for listeners that did not ask, then with it.
                if let Event::Change { listeners, event } = &e {
                    let split = matches!(events.peek(), Some(Event::Change { event: next, .. })
                        if event.value.is_none() && next.value.is_some()
                            && *event == ChangeEvent { value: None, ..next.clone() });
                    if split {
                        if let Some(Event::Change {
                            listeners: with,
                            event: full,
                        }) = events.next()
                        {
                            self.check_values(i, listeners, false)?;
                            self.check_values(i, &with, true)?;
                            let mut all = listeners.clone();
                            all.extend(with);
                            all.sort_unstable();
                            self.check_event(
                                i,
                                Event::Change {
                                    listeners: all,
                                    event: full,
                                },
                            )?;
                            continue;
                        }
                    }
                    if event.value.is_some() {
                        self.check_values(i, listeners, true)?;
                    }
                }
                self.check_event(i, e)?;
            }
        }
        Ok(())
    }

    /// Every listener of a copy with (or split off without) the value asked
    /// for values (or did not).
    fn check_values(
        &self,
        i: usize,
        listeners: &[ListenerId],
        wanted: bool,
    ) -> Result<(), Violation> {
        for l in listeners {
            if self.m[i]
                .listeners
                .get(l)
                .is_some_and(|(_, _, v)| *v != wanted)
            {
                return Err(self.fail(format!(
                    "client {i}: listener {l:?} got a copy {} the value though it asked {}",
                    if wanted { "with" } else { "without" },
                    if wanted { "for none" } else { "for values" }
                )));
            }
        }
        Ok(())
    }

    fn check_event(&mut self, i: usize, e: Event) -> Result<(), Violation> {
        let now = self.w.now;
        match e {
            Event::Completed { op, result } => {
                let Some(rec) = self.m[i].ops.get_mut(&op) else {
                    return Err(self.fail(format!("client {i}: completion of unknown {op:?}")));
                };
                if rec.resolved.is_some() {
                    return Err(self.fail(format!("client {i}: {op:?} completed twice")));
                }
                rec.resolved = Some((now, result));
            }
            Event::Change { listeners, event } => {
                self.stats.events += 1;
                let expected: Vec<ListenerId> = self.m[i]
                    .listeners
                    .iter()
                    .filter(|(_, (b, k, _))| {
                        (b == "*" || *b == event.bucket) && (k == "*" || *k == event.key)
                    })
                    .map(|(id, _)| *id)
                    .collect();
                if listeners != expected {
                    return Err(self.fail(format!(
                        "client {i}: event {}/{} routed to {listeners:?}, expected {expected:?}",
                        event.bucket, event.key
                    )));
                }
                if event.client_id.as_deref() == Some(self.m[i].client_id.as_str()) {
                    return Err(self.fail(format!("client {i}: received its own write {event:?}")));
                }
                if let Some(v) = event.value.as_ref().filter(|_| !event.is_deleted) {
                    if let Some(tag) = v.get("tag").and_then(Value::as_str) {
                        let p = v.get("p").and_then(Value::as_str).unwrap_or("");
                        let mark = format!(
                            "{}|{}|{tag}|{p}|{}",
                            event.bucket,
                            event.key,
                            event.timestamp.is_some()
                        );
                        if !self.m[i].seen.insert(mark.clone()) {
                            return Err(self.fail(format!("client {i}: duplicate event {mark}")));
                        }
                    }
                }
            }
            Event::Messaging(me) => self.check_messaging(i, me)?,
            Event::Connected { .. }
            | Event::Disconnected { .. }
            | Event::Pong { .. }
            | Event::Binary { .. }
            | Event::ServerError { .. } => {}
            Event::ProtocolError(p) => {
                return Err(self.fail(format!(
                    "client {i}: protocol error from our own server: {p}"
                )))
            }
            other => return Err(self.fail(format!("client {i}: unexpected event {other:?}"))),
        }
        Ok(())
    }

    fn check_messaging(&mut self, i: usize, e: MessagingEvent) -> Result<(), Violation> {
        let now = self.w.now;
        match e {
            MessagingEvent::RequestDone { request, result } => {
                let Some((msg, slot)) = self.m[i].requests.get_mut(&request) else {
                    return Err(self.fail(format!("client {i}: done for unknown {request:?}")));
                };
                if slot.is_some() {
                    return Err(self.fail(format!("client {i}: {request:?} done twice")));
                }
                if let Ok(data) = &result {
                    if data != msg {
                        let what = format!("client {i}: {request:?} got {data} for {msg}");
                        return Err(self.fail(what));
                    }
                    self.stats.replies += 1;
                }
                *slot = Some(result);
            }
            MessagingEvent::RequestProgress { request, .. } => {
                if !self.m[i]
                    .requests
                    .get(&request)
                    .is_some_and(|(_, r)| r.is_none())
                {
                    return Err(
                        self.fail(format!("client {i}: progress for a finished {request:?}"))
                    );
                }
            }
            MessagingEvent::IncomingRequest {
                incoming, message, ..
            } => {
                if message.get("ask").is_none() {
                    return Err(self.fail(format!(
                        "client {i}: a reply was handed over as a request: {message}"
                    )));
                }
                let delay = Duration::from_millis(self.rng.below_inclusive(300));
                if self.chance(300) {
                    let _ = self.w.clients[i]
                        .core
                        .send_progress(now, incoming, json!("working"));
                    self.w.pump_client(i);
                }
                self.m[i].replies_due.push((now + delay, incoming, message));
            }
            MessagingEvent::JobQuery { task, .. } => {
                let answer = if self.chance(50) {
                    JobAnswer::NotSupported
                } else if self.m[i].free_workers > 0 {
                    self.m[i].free_workers -= 1;
                    self.m[i].accepted.insert(task);
                    JobAnswer::Accept
                } else {
                    JobAnswer::NoWorkerAvailable
                };
                self.w.clients[i].core.answer_job_query(now, task, answer);
                self.w.pump_client(i);
            }
            MessagingEvent::JobStarted { task, job, .. } => {
                if !self.m[i].accepted.remove(&task) {
                    return Err(self.fail(format!(
                        "client {i}: {task:?} started without being accepted"
                    )));
                }
                let tag = job
                    .get("job")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_string();
                let n = {
                    let n = self.started.entry(tag.clone()).or_default();
                    *n += 1;
                    *n
                };
                if n > 1 {
                    return Err(self.fail(format!("job {tag} worked {n} times")));
                }
                let d = Duration::from_millis(self.rng.below_inclusive(1200));
                self.m[i].working.insert(task, now + d);
                // Remember the job to answer with it.
                self.m[i]
                    .replies_due
                    .push((Instant::ZERO, IncomingId(u64::MAX - task.0), job));
            }
            MessagingEvent::JobLost { task, .. } => {
                if !self.m[i].accepted.remove(&task) {
                    return Err(
                        self.fail(format!("client {i}: {task:?} lost without being accepted"))
                    );
                }
                self.m[i].free_workers += 1;
            }
            MessagingEvent::JobDone { job, result } => {
                let Some((payload, slot)) = self.m[i].jobs.get_mut(&job) else {
                    return Err(self.fail(format!("client {i}: done for unknown {job:?}")));
                };
                if slot.is_some() {
                    return Err(self.fail(format!("client {i}: {job:?} done twice")));
                }
                if let Ok(data) = &result {
                    if *data != json!({ "done": payload }) {
                        let what = format!("client {i}: {job:?} done with {data} for {payload}");
                        return Err(self.fail(what));
                    }
                    self.stats.jobs_done += 1;
                }
                *slot = Some(result);
            }
            MessagingEvent::JobProgress { job, .. } => {
                if !self.m[i].jobs.get(&job).is_some_and(|(_, r)| r.is_none()) {
                    return Err(self.fail(format!("client {i}: progress for a finished {job:?}")));
                }
            }
        }
        Ok(())
    }

    /// Application timers due now: replies, finished work, healed faults.
    fn app_timers(&mut self) {
        let now = self.w.now;
        for i in 0..self.m.len() {
            let due: Vec<(Instant, IncomingId, Value)> = self.m[i]
                .replies_due
                .iter()
                .filter(|(t, id, _)| *t <= now && id.0 < u64::MAX / 2)
                .cloned()
                .collect();
            self.m[i]
                .replies_due
                .retain(|(t, id, _)| !(*t <= now && id.0 < u64::MAX / 2));
            for (_, incoming, message) in due {
                let _ = self.w.clients[i].core.reply(now, incoming, Ok(message));
            }
            let finished: Vec<TaskId> = self.m[i]
                .working
                .iter()
                .filter(|(_, t)| **t <= now)
                .map(|(k, _)| *k)
                .collect();
            for task in finished {
                self.m[i].working.remove(&task);
                let marker = IncomingId(u64::MAX - task.0);
                let job = self.m[i]
                    .replies_due
                    .iter()
                    .position(|(_, id, _)| *id == marker)
                    .map(|p| self.m[i].replies_due.remove(p).2)
                    .unwrap_or(Value::Null);
                let _ = self.w.clients[i]
                    .core
                    .job_progress(now, task, json!("half"));
                let _ = self.w.clients[i]
                    .core
                    .job_done(now, task, Ok(json!({ "done": job })));
                self.m[i].free_workers += 1;
            }
            self.w.pump_client(i);
        }
        let healed: Vec<Fault> = self
            .heal_at
            .iter()
            .filter(|(t, _)| *t <= now)
            .map(|(_, f)| *f)
            .collect();
        self.heal_at.retain(|(t, _)| *t > now);
        for f in healed {
            match f {
                Fault::StartServer => self.w.start_server(),
                Fault::AcceptWs => self.w.set_refuse_ws(false),
            }
        }
    }

    fn next_app_timer(&self) -> Option<Instant> {
        let replies = self.m.iter().flat_map(|m| {
            m.replies_due
                .iter()
                .filter(|(_, id, _)| id.0 < u64::MAX / 2)
                .map(|(t, _, _)| *t)
        });
        let work = self.m.iter().flat_map(|m| m.working.values().copied());
        let heal = self.heal_at.iter().map(|(t, _)| *t);
        replies.chain(work).chain(heal).min()
    }

    /// The server's registration equals the client's whenever both are
    /// settled (nothing in flight).
    fn check_registrations(&self) -> Result<(), Violation> {
        if !self.w.network_idle() {
            return Ok(());
        }
        for (i, c) in self.w.clients.iter().enumerate() {
            if !c.core.is_connected() {
                continue;
            }
            let Some(conn) = self.w.hub_conn(i) else {
                continue;
            };
            let Some((events, send_values)) = self.w.hub.registration(conn) else {
                continue;
            };
            let want = c.core.registration();
            if events != want.events || (!want.events.is_empty() && send_values != want.send_values)
            {
                return Err(self.fail(format!(
                    "client {i}: hub holds {events:?}/{send_values}, client wants {:?}/{}",
                    want.events, want.send_values
                )));
            }
        }
        Ok(())
    }

    fn advance(
        &mut self,
        until: Instant,
        act: bool,
        next_action: &mut Instant,
    ) -> Result<(), Violation> {
        loop {
            let candidates = [
                self.w.next_time(),
                self.next_app_timer(),
                act.then_some(*next_action),
            ];
            let Some(t) = candidates.into_iter().flatten().min() else {
                break;
            };
            if t > until {
                break;
            }
            if self.w.next_time() == Some(t) {
                self.w.step();
            } else {
                self.w.run_until(t);
            }
            self.observe()?;
            self.app_timers();
            if act && *next_action <= self.w.now {
                let n = self.w.clients.len();
                let i = self.rng.below_inclusive(n as u64 - 1) as usize;
                if self.chance(15) {
                    self.fault();
                } else if self.chance(2) && !self.m[i].closed && i != 0 {
                    let now = self.w.now;
                    self.w.clients[i].core.close(now);
                    self.m[i].closed = true;
                    self.w.pump_client(i);
                } else {
                    self.act(i)?;
                }
                *next_action = self.w.now + Duration::from_millis(1 + self.rng.below_inclusive(60));
            }
            self.observe()?;
            self.check_registrations()?;
        }
        self.w.run_until(until);
        self.observe()
    }

    fn final_checks(&self) -> Result<(), Violation> {
        // Every operation resolved, exactly once (twice is caught on arrival).
        for (i, m) in self.m.iter().enumerate() {
            for (op, rec) in &m.ops {
                if rec.resolved.is_none() {
                    return Err(
                        self.fail(format!("client {i}: {op:?} ({}) never resolved", rec.kind))
                    );
                }
            }
            for (r, (_, res)) in &m.requests {
                if res.is_none() {
                    return Err(self.fail(format!("client {i}: {r:?} never ended")));
                }
            }
            for (j, (_, res)) in &m.jobs {
                if res.is_none() {
                    return Err(self.fail(format!("client {i}: {j:?} never ended")));
                }
            }
            let c = &self.w.clients[i].core;
            if c.pending_operations() != 0 || !c.messaging_idle() {
                return Err(self.fail(format!(
                    "client {i}: state not drained: {} pending ops, messaging idle {}",
                    c.pending_operations(),
                    c.messaging_idle()
                )));
            }
            if !m.accepted.is_empty() && !m.closed {
                return Err(self.fail(format!(
                    "client {i}: accepted tasks never started nor lost: {:?}",
                    m.accepted
                )));
            }
        }
        // Applied exactly once when successful, never when refused, never
        // after resolution (no ghost writes).
        let mut applied: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for a in self.w.store.log() {
            let tag = match (a.kind, &a.value) {
                ("write", Some(v)) => v.get("tag").and_then(Value::as_str).map(String::from),
                ("patch", Some(v)) => v
                    .as_array()
                    .and_then(|ops| ops.first())
                    .and_then(|op| op.get("value"))
                    .and_then(Value::as_str)
                    .map(String::from),
                _ => None,
            };
            if let Some(tag) = tag {
                applied.entry(tag).or_default().push(a.at_ms);
            }
        }
        for (i, m) in self.m.iter().enumerate() {
            for (op, rec) in &m.ops {
                let Some(tag) = &rec.tag else { continue };
                let Some((_, result)) = &rec.resolved else {
                    continue;
                };
                let times = applied.get(tag).map(Vec::as_slice).unwrap_or(&[]);
                let bad = match result {
                    Ok(_) => times.len() != 1,
                    Err(
                        OpError::AlreadyExists | OpError::NotFound | OpError::InvalidPatch { .. },
                    ) => !times.is_empty(),
                    Err(OpError::Unsupported(_)) => !times.is_empty(),
                    Err(_) => times.len() > 1,
                };
                if bad {
                    return Err(self.fail(format!(
                        "client {i}: {op:?} {} {tag} resolved {result:?} but applied {} times",
                        rec.kind,
                        times.len()
                    )));
                }
            }
        }
        // No ghost operations: nothing is sent for an operation after it
        // resolved, and a write, patch or remove is sent at most once.
        let mut sent: BTreeMap<(usize, OpId), u32> = BTreeMap::new();
        for &(i, op, at) in &self.w.sends {
            let Some(rec) = self.m[i].ops.get(&op) else {
                continue;
            };
            let n = sent.entry((i, op)).or_default();
            *n += 1;
            if *n > 1 && !matches!(rec.kind, "read" | "list") {
                return Err(self.fail(format!("client {i}: {op:?} {} sent {n} times", rec.kind)));
            }
            if let Some((resolved, _)) = &rec.resolved {
                if at > *resolved {
                    return Err(self.fail(format!("client {i}: ghost {}: {op:?} sent at {at:?} after resolving at {resolved:?}", rec.kind)));
                }
            }
        }
        self.check_registrations()
    }
}

/// Runs the simulation for `seed`: a random world, a workload with faults,
/// a drain, and every invariant.
pub fn run_seed(seed: u64) -> Result<RunStats, Violation> {
    let mut rng = Prng::new(seed);
    let net = NetConfig {
        latency: Duration::from_millis(1 + rng.below_inclusive(30)),
        jitter: Duration::from_millis(rng.below_inclusive(20)),
    };
    let n = 2 + rng.below_inclusive(3) as usize;
    let mut w = World::new(rng.next_u64(), net);
    let mut m = Vec::new();
    for i in 0..n {
        let client_id = format!("c{i}");
        let config = Config {
            client_id: Some(client_id.clone()),
            enable_ping: true,
            ping_interval: Duration::from_secs(2),
            missed_pong_limit: 2,
            request_timeout: Duration::from_millis(1500 + rng.below_inclusive(3000)),
            connect_timeout: Duration::from_secs(2),
            backoff: Backoff {
                initial: Duration::from_millis(50),
                max: Duration::from_secs(2),
            },
            ..Config::default()
        };
        w.add_client(config);
        m.push(Model {
            client_id,
            ..Model::default()
        });
    }
    let now = w.now;
    // Client 0 asks and produces; the others reply and consume.
    m[0].requestor = Some(w.clients[0].core.create_requestor(
        now,
        "sim",
        Duration::from_secs(4),
        Duration::from_secs(2),
    ));
    m[0].producer = Some(w.clients[0].core.create_producer(
        now,
        "sim",
        Duration::from_secs(8),
        Duration::from_secs(4),
    ));
    for (i, model) in m.iter_mut().enumerate().skip(1) {
        model.replier = Some(w.clients[i].core.create_replier(now, "sim"));
        model.consumer = Some(w.clients[i].core.create_consumer(
            now,
            "sim",
            Some(&format!("consumer-{i}")),
        ));
        model.free_workers = 1 + rng.below_inclusive(1) as usize;
    }
    for i in 0..n {
        w.pump_client(i);
    }
    let mut run = Run {
        seed,
        rng,
        w,
        m,
        stats: RunStats::default(),
        started: BTreeMap::new(),
        heal_at: Vec::new(),
        counter: 0,
    };
    let workload = Duration::from_secs(20);
    let mut next_action = run.w.now + Duration::from_millis(100);
    run.advance(Instant::ZERO + workload, true, &mut next_action)?;
    // Heal everything and let the workload drain.
    run.w.start_server();
    run.w.set_refuse_ws(false);
    run.heal_at.clear();
    let drain_until = run.w.now + Duration::from_secs(40);
    run.advance(drain_until, false, &mut next_action)?;
    run.final_checks()?;
    Ok(run.stats)
}
