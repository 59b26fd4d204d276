//! Request–reply and competing consumers over real sockets: several
//! clients of one in-process server, each in its own role (the server
//! never echoes a client's own signals and writes back to it).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cachearoo::{
    Cachearoo, CompetingConsumer, JobDone, JobProgress, MessagingError, Overflow, Producer,
    Replier, ReplierOptions, Requestor, Runtime, Worker, JOB_NOT_SUPPORTED, REPLIER_OVERLOADED,
};
use futures_lite::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::support::*;

const LONG: Duration = Duration::from_secs(8);

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone, Copy)]
struct Add {
    a: i64,
    b: i64,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Sum {
    result: i64,
}

/// `n` connected clients of `server`.
async fn clients<R: Runtime + Clone>(
    rt: &R,
    addr: std::net::SocketAddr,
    n: usize,
) -> Vec<Cachearoo> {
    let mut all = Vec::new();
    for _ in 0..n {
        all.push(connected(rt, options(addr)).await);
    }
    all
}

async fn close_all(clients: &[Cachearoo]) {
    for c in clients {
        c.close().await;
    }
}

async fn bucket_keys<R: Runtime>(rt: &R, c: &Cachearoo, bucket: &str) -> Vec<String> {
    let list = std::future::IntoFuture::into_future(c.list().bucket(bucket));
    within(rt, "a list", list)
        .await
        .expect("list")
        .into_iter()
        .map(|i| i.key)
        .collect()
}

/// Plays a C++ replier on `cpp` for one request seen by `requests`: data
/// and progress as JSON strings holding JSON text.
async fn cpp_reply<R: Runtime>(
    rt: &R,
    cpp: &Cachearoo,
    requests: &mut cachearoo::Listener,
    with_progress: bool,
) {
    let e = next_change(rt, requests).await;
    assert_eq!(e.value, Some(json!({"a": 7, "b": 8})));
    let conn = cpp.connection();
    if with_progress {
        conn.signal_event(
            "#reqrep-progress/interop",
            e.key.clone(),
            &json!({"data": "{\"step\":1}"}),
        )
        .await
        .expect("progress");
    }
    conn.signal_event(
        "#reqrep/interop",
        e.key,
        &json!({"err": null, "data": "{\"result\":15}"}),
    )
    .await
    .expect("reply");
}

pub async fn request_progress_reply<R: Runtime + Clone>(rt: R) {
    let server = server();
    let cs = clients(&rt, server.addr(), 2).await;
    let (asker, answerer) = (&cs[0], &cs[1]);
    let mut replier = Replier::new(answerer, "math").await.expect("replier");
    settled(&rt, answerer).await;
    let requestor = Requestor::new(asker, "math", LONG, LONG)
        .await
        .expect("requestor");
    assert_eq!(requestor.channel(), "math");

    // Stream form, with progress.
    let mut call = requestor
        .request_with_progress::<_, Sum>(&Add { a: 7, b: 8 })
        .await
        .expect("sent");
    let request = within(&rt, "a request", replier.next())
        .await
        .expect("replier open");
    let add: Add = request.parse().expect("typed message");
    assert_eq!(add, Add { a: 7, b: 8 });
    request.progress(&json!({"step": 1})).expect("progress");
    request.progress(&json!({"step": 2})).expect("progress");
    request
        .reply(Ok::<_, ()>(Sum {
            result: add.a + add.b,
        }))
        .expect("reply");
    let mut progress = Vec::new();
    while let Some(p) = within(&rt, "progress", call.next()).await {
        progress.push(p);
    }
    assert_eq!(progress, [json!({"step": 1}), json!({"step": 2})]);
    assert_eq!(
        within(&rt, "the result", call.result()).await.expect("ok"),
        Sum { result: 15 }
    );

    // Remote errors come back as they were sent.
    let answer = async {
        let request = within(&rt, "a request", replier.next())
            .await
            .expect("open");
        request
            .reply(Err::<(), _>(json!({"message": "division by zero"})))
            .expect("reply");
    };
    let (result, ()) =
        futures_lite::future::zip(requestor.request::<_, Sum>(&json!(0)), answer).await;
    match result {
        Err(MessagingError::Remote(e)) => assert_eq!(e, json!({"message": "division by zero"})),
        other => panic!("expected a remote error, got {other:?}"),
    }

    // A typed result that does not fit is a deserialize error.
    let answer = async {
        let request = within(&rt, "a request", replier.next())
            .await
            .expect("open");
        request.reply(Ok::<_, ()>("fifteen")).expect("reply");
    };
    let (result, ()) =
        futures_lite::future::zip(requestor.request::<_, Sum>(&json!(0)), answer).await;
    assert!(
        matches!(result, Err(MessagingError::Deserialize(_))),
        "{result:?}"
    );

    // Handler form (JS onMessage), with progress; many requests in flight.
    let mut echo = Replier::new(answerer, "echo").await.expect("replier");
    echo.on_message(|message, reply, progress| {
        progress.send(&"got it").expect("progress");
        reply.ok(&json!({"echo": message})).expect("reply");
    });
    settled(&rt, answerer).await;
    let echoes = Requestor::new(asker, "echo", LONG, LONG)
        .await
        .expect("requestor");
    let calls = (0..50).map(|i| {
        let echoes = echoes.clone();
        async move { echoes.request::<_, Value>(&i).await }
    });
    for (i, r) in futures_util::future::join_all(calls)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(r.expect("echo"), json!({"echo": i}));
    }
    let mut call = echoes
        .request_with_progress::<_, Value>(&"p")
        .await
        .expect("sent");
    assert_eq!(
        within(&rt, "progress", call.next()).await,
        Some(json!("got it"))
    );
    assert_eq!(call.result().await.expect("ok"), json!({"echo": "p"}));

    // `serve`: an async handler.
    let mut adder = Replier::new(answerer, "adder").await.expect("replier");
    adder.serve(2, |message, _progress| async move {
        let add: Add = serde_json::from_value(message).map_err(|e| e.to_string())?;
        Ok::<_, String>(Sum {
            result: add.a + add.b,
        })
    });
    settled(&rt, answerer).await;
    let adds = Requestor::new(asker, "adder", LONG, LONG)
        .await
        .expect("requestor");
    let sum: Sum = adds.request(&Add { a: 2, b: 3 }).await.expect("sum");
    assert_eq!(sum, Sum { result: 5 });
    let err = adds.request::<_, Sum>(&"x").await.unwrap_err();
    assert!(err.remote().is_some_and(Value::is_string), "{err:?}");
    close_all(&cs).await;
    server.shutdown();
}

pub async fn request_timeouts_and_late_replies<R: Runtime + Clone>(rt: R) {
    let server = server();
    let cs = clients(&rt, server.addr(), 2).await;
    let (asker, answerer) = (&cs[0], &cs[1]);
    let mut replier = Replier::new(answerer, "slow").await.expect("replier");
    settled(&rt, answerer).await;
    let timeout = Duration::from_millis(1200);
    let progress_timeout = Duration::from_millis(400);
    let requestor = Requestor::new(asker, "slow", timeout, progress_timeout)
        .await
        .expect("requestor");

    // Nobody answers: the progress timeout ends it first.
    let started = Instant::now();
    let result = requestor.request::<_, Value>(&1).await;
    assert!(
        matches!(result, Err(MessagingError::ProgressTimeout)),
        "{result:?}"
    );
    assert!(started.elapsed() < timeout, "{:?}", started.elapsed());
    let first = within(&rt, "request 1", replier.next())
        .await
        .expect("open");
    assert_eq!(first.message(), &json!(1));

    // Progress keeps it past the progress timeout; the timeout still ends it.
    let started = Instant::now();
    let keep_alive = async {
        let request = within(&rt, "request 2", replier.next())
            .await
            .expect("open");
        while started.elapsed() < timeout + Duration::from_millis(200) {
            request.progress(&"working").expect("progress");
            rt.sleep(Duration::from_millis(100)).await;
        }
        request
    };
    let (result, second) =
        futures_lite::future::zip(requestor.request::<_, Value>(&2), keep_alive).await;
    assert!(matches!(result, Err(MessagingError::Timeout)), "{result:?}");
    assert!(started.elapsed() >= timeout, "{:?}", started.elapsed());

    // Late replies are dropped: the next request gets its own answer.
    first.reply(Ok::<_, ()>("late 1")).expect("late reply");
    second.reply(Ok::<_, ()>("late 2")).expect("late reply");
    let answer = async {
        let request = within(&rt, "request 3", replier.next())
            .await
            .expect("open");
        let message = request.message().clone();
        request.reply(Ok::<_, ()>(message)).expect("reply");
    };
    let (result, ()) = futures_lite::future::zip(requestor.request::<_, Value>(&3), answer).await;
    assert_eq!(result.expect("answered"), json!(3));

    // A request dropped unanswered is never answered: its requestor times out.
    let drop_it = async {
        let request = within(&rt, "request 4", replier.next())
            .await
            .expect("open");
        drop(request);
    };
    let (result, ()) = futures_lite::future::zip(requestor.request::<_, Value>(&4), drop_it).await;
    assert!(
        matches!(result, Err(MessagingError::ProgressTimeout)),
        "{result:?}"
    );
    close_all(&cs).await;
    server.shutdown();
}

pub async fn two_repliers_one_channel<R: Runtime + Clone>(rt: R) {
    let server = server();
    let cs = clients(&rt, server.addr(), 3).await;
    let seen = [Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0))];
    let mut repliers = Vec::new();
    for (i, count) in seen.iter().enumerate() {
        let mut replier = Replier::new(&cs[i + 1], "both").await.expect("replier");
        let count = count.clone();
        replier.on_message(move |message, reply, _| {
            count.fetch_add(1, Ordering::SeqCst);
            // Both answer every request, as a careless application would.
            reply
                .ok(&json!({"replier": i, "request": message}))
                .expect("reply");
        });
        settled(&rt, &cs[i + 1]).await;
        repliers.push(replier);
    }
    let requestor = Requestor::new(&cs[0], "both", LONG, LONG)
        .await
        .expect("requestor");
    for n in 0..20 {
        let answer: Value = within(&rt, "a reply", requestor.request(&n))
            .await
            .expect("reply");
        // Exactly one result per request, from either replier.
        assert_eq!(answer["request"], json!(n));
    }
    // Let the last replies reach the other replier, then check that no
    // replier took a reply for a request.
    rt.sleep(Duration::from_millis(200)).await;
    settled(&rt, &cs[1]).await;
    settled(&rt, &cs[2]).await;
    assert_eq!(seen[0].load(Ordering::SeqCst), 20);
    assert_eq!(seen[1].load(Ordering::SeqCst), 20);
    close_all(&cs).await;
    server.shutdown();
}

pub async fn replier_overflow<R: Runtime + Clone>(rt: R) {
    let server = server();
    let cs = clients(&rt, server.addr(), 2).await;
    let (asker, answerer) = (&cs[0], &cs[1]);

    // Fail fast: two requests wait, the rest are refused at once.
    let mut replier = Replier::with_options(answerer, "busy", ReplierOptions::new().capacity(2))
        .await
        .expect("replier");
    settled(&rt, answerer).await;
    let requestor = Requestor::new(asker, "busy", LONG, LONG)
        .await
        .expect("requestor");
    let finished = Arc::new(AtomicUsize::new(0));
    let calls = (0..5).map(|i| {
        let (requestor, finished) = (requestor.clone(), finished.clone());
        async move {
            let r = requestor.request::<_, Value>(&i).await;
            finished.fetch_add(1, Ordering::SeqCst);
            r
        }
    });
    let answer = async {
        // Nobody reads until the overflow has been answered.
        eventually(&rt, "3 refusals", || finished.load(Ordering::SeqCst) == 3).await;
        for _ in 0..2 {
            let request = within(&rt, "a queued request", replier.next())
                .await
                .expect("open");
            let message = request.message().clone();
            request.reply(Ok::<_, ()>(message)).expect("reply");
        }
    };
    let started = Instant::now();
    let (results, ()) =
        futures_lite::future::zip(futures_util::future::join_all(calls), answer).await;
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(MessagingError::Remote(Value::String(s))) if s == REPLIER_OVERLOADED))
        .count();
    let answered = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!((refused, answered), (3, 2), "{results:?}");
    assert!(started.elapsed() < LONG, "refusals came fast");

    // Ignore: the overflow is left to time out.
    let mut quiet = Replier::with_options(
        answerer,
        "quiet",
        ReplierOptions::new().capacity(1).overflow(Overflow::Ignore),
    )
    .await
    .expect("replier");
    settled(&rt, answerer).await;
    let short = Duration::from_millis(500);
    let requestor = Requestor::new(asker, "quiet", LONG, short)
        .await
        .expect("requestor");
    let (a, b) = futures_lite::future::zip(
        requestor.request::<_, Value>(&"a"),
        requestor.request::<_, Value>(&"b"),
    )
    .await;
    assert!(matches!(a, Err(MessagingError::ProgressTimeout)), "{a:?}");
    assert!(matches!(b, Err(MessagingError::ProgressTimeout)), "{b:?}");
    // One of them waited in the queue; the other was never queued.
    let queued = within(&rt, "the queued request", quiet.next())
        .await
        .expect("open");
    assert!(queued.message() == &json!("a") || queued.message() == &json!("b"));
    close_all(&cs).await;
    server.shutdown();
}

pub async fn string_data_interop<R: Runtime + Clone>(rt: R) {
    // A C++ replier sends data (and progress) as a JSON string holding
    // JSON text; here a raw client plays it with signal_event.
    let server = server();
    let cs = clients(&rt, server.addr(), 2).await;
    let (asker, cpp) = (&cs[0], &cs[1]);
    let mut requests = cpp
        .connection()
        .add_listener("#reqrep/interop", "*", true)
        .await
        .expect("listener");
    settled(&rt, cpp).await;
    let requestor = Requestor::new(asker, "interop", LONG, LONG)
        .await
        .expect("requestor");
    let add = Add { a: 7, b: 8 };
    let mut call = requestor
        .request_with_progress::<_, Sum>(&add)
        .await
        .expect("sent");
    cpp_reply(&rt, cpp, &mut requests, true).await;
    // Progress is handed over as sent.
    assert_eq!(
        within(&rt, "progress", call.next()).await,
        Some(json!("{\"step\":1}"))
    );
    // A typed result also tries the string as JSON text.
    assert_eq!(call.result().await.expect("typed"), Sum { result: 15 });
    // Asked as a Value (or String), the data is exactly what was sent.
    let (raw, ()) = futures_lite::future::zip(
        requestor.request::<_, Value>(&add),
        cpp_reply(&rt, cpp, &mut requests, false),
    )
    .await;
    assert_eq!(raw.expect("raw"), json!("{\"result\":15}"));
    close_all(&cs).await;
    server.shutdown();
}

/// A worker of the tests: works a job in a task of the runtime after
/// `delay`, records what it did.
struct TestWorker<R> {
    id: String,
    busy: AtomicBool,
    rt: R,
    delay: Duration,
    /// Job number → workers that worked it.
    log: Arc<Mutex<BTreeMap<i64, Vec<String>>>>,
    /// Jobs being worked now, everywhere; and the most ever at once.
    running: Arc<AtomicUsize>,
    max_running: Arc<AtomicUsize>,
}

impl<R: Runtime + Clone> TestWorker<R> {
    fn new(
        id: String,
        rt: R,
        delay: Duration,
        log: Arc<Mutex<BTreeMap<i64, Vec<String>>>>,
    ) -> Arc<Self> {
        Arc::new(TestWorker {
            id,
            busy: AtomicBool::new(false),
            rt,
            delay,
            log,
            running: Arc::new(AtomicUsize::new(0)),
            max_running: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Reserves the worker if it is free.
    fn reserve(&self) -> bool {
        self.busy
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }
}

impl<R: Runtime + Clone> Worker for TestWorker<R> {
    fn id(&self) -> &str {
        &self.id
    }

    fn available(&self) -> bool {
        !self.busy.load(Ordering::SeqCst)
    }

    fn work(&self, job: Value, done: JobDone, progress: JobProgress) {
        let n = job["n"].as_i64().unwrap_or(-1);
        self.log
            .lock()
            .expect("log")
            .entry(n)
            .or_default()
            .push(self.id.clone());
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        let (rt, delay, id, running) = (
            self.rt.clone(),
            self.delay,
            self.id.clone(),
            self.running.clone(),
        );
        self.rt.spawn(Box::pin(async move {
            progress
                .send(&json!({"n": n, "at": "start"}))
                .expect("progress");
            rt.sleep(delay).await;
            running.fetch_sub(1, Ordering::SeqCst);
            done.ok(&json!({"n": n, "by": id})).expect("done");
        }));
    }

    fn release(&self) {
        self.busy.store(false, Ordering::SeqCst);
    }
}

/// A consumer whose `on_job_query` hands out the first free worker of `workers`.
async fn worker_consumer<R: Runtime + Clone>(
    client: &Cachearoo,
    channel: &str,
    workers: Vec<Arc<TestWorker<R>>>,
    queries: Arc<AtomicUsize>,
) -> CompetingConsumer {
    let mut consumer = CompetingConsumer::new(client, channel)
        .await
        .expect("consumer");
    consumer.on_job_query(move |_job, callback| {
        queries.fetch_add(1, Ordering::SeqCst);
        match workers.iter().find(|w| w.reserve()) {
            Some(w) => callback.accept(w.clone()),
            None => callback.no_worker_available(),
        }
    });
    consumer
}

pub async fn competing_consumers_100_jobs<R: Runtime + Clone>(rt: R) {
    let server = server();
    let cs = clients(&rt, server.addr(), 4).await;
    let log = Arc::new(Mutex::new(BTreeMap::new()));
    let mut all_workers = Vec::new();
    let mut consumers = Vec::new();
    for (c, client) in cs.iter().enumerate().skip(1) {
        let workers: Vec<_> = (0..2)
            .map(|w| {
                TestWorker::new(
                    format!("c{c}w{w}"),
                    rt.clone(),
                    Duration::from_millis(2),
                    log.clone(),
                )
            })
            .collect();
        all_workers.extend(workers.iter().cloned());
        consumers.push(worker_consumer(client, "cc", workers, Arc::new(AtomicUsize::new(0))).await);
        settled(&rt, client).await;
    }
    let producer = Producer::new(&cs[0], "cc", LONG, LONG)
        .await
        .expect("producer");
    let jobs = (0..100).map(|n| {
        let producer = producer.clone();
        async move { producer.add_job::<_, Value>(&json!({"n": n})).await }
    });
    let results = within(&rt, "100 jobs", futures_util::future::join_all(jobs)).await;
    for (n, r) in results.iter().enumerate() {
        let r = r.as_ref().expect("job done");
        assert_eq!(r["n"], json!(n));
    }
    // Every job worked exactly once, by the worker that reported it.
    let log = log.lock().expect("log").clone();
    assert_eq!(log.len(), 100);
    for (n, workers) in &log {
        assert_eq!(workers.len(), 1, "job {n} worked by {workers:?}");
        assert_eq!(
            results[*n as usize].as_ref().expect("done")["by"],
            json!(workers[0])
        );
    }
    // Lost claims released their worker too: all are free again.
    eventually(&rt, "every worker released", || {
        all_workers.iter().all(|w| w.available())
    })
    .await;
    // Claimed jobs were removed, finished status keys too.
    assert!(bucket_keys(&rt, &cs[0], "messaging.compcon.cc.jobs")
        .await
        .is_empty());
    within(&rt, "status keys removed", async {
        while !bucket_keys(&rt, &cs[0], "messaging.compcon.cc.status")
            .await
            .is_empty()
        {
            rt.sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    drop(consumers);
    close_all(&cs).await;
    server.shutdown();
}

pub async fn job_not_supported<R: Runtime + Clone>(rt: R) {
    let server = server();
    let cs = clients(&rt, server.addr(), 3).await;
    let log = Arc::new(Mutex::new(BTreeMap::new()));
    let asked: [Arc<Mutex<Vec<i64>>>; 2] = Default::default();
    let mut consumers = Vec::new();
    for (i, kind) in ["a", "b"].into_iter().enumerate() {
        let worker = TestWorker::new(kind.into(), rt.clone(), Duration::ZERO, log.clone());
        let asked = asked[i].clone();
        let mut consumer = CompetingConsumer::with_id(&cs[i + 1], "ns", format!("consumer-{kind}"))
            .await
            .expect("consumer");
        consumer.on_job_query(move |job, callback| {
            asked
                .lock()
                .expect("asked")
                .push(job["n"].as_i64().unwrap_or(-1));
            if job["kind"] != json!(kind) {
                // The JS way: callback(JOB_NOT_SUPPORTED).
                callback.answer_with(Err(JOB_NOT_SUPPORTED));
            } else if worker.reserve() {
                callback.answer_with(Ok(worker.clone()));
            } else {
                callback.no_worker_available();
            }
        });
        settled(&rt, &cs[i + 1]).await;
        consumers.push(consumer);
    }
    let producer = Producer::new(&cs[0], "ns", LONG, LONG)
        .await
        .expect("producer");
    // Only the unsupported job's producer is impatient.
    let impatient = Producer::new(&cs[0], "ns", Duration::from_millis(800), LONG)
        .await
        .expect("producer");
    let run = |n: i64, kind: &'static str| {
        let producer = if kind == "c" {
            impatient.clone()
        } else {
            producer.clone()
        };
        async move {
            producer
                .add_job::<_, Value>(&json!({"n": n, "kind": kind}))
                .await
        }
    };
    let (a, (b, c)) = futures_lite::future::zip(
        run(0, "a"),
        futures_lite::future::zip(run(1, "b"), run(2, "c")),
    )
    .await;
    assert_eq!(a.expect("a")["by"], json!("a"));
    assert_eq!(b.expect("b")["by"], json!("b"));
    // Nobody supports "c": the producer times out and takes the job back.
    assert!(matches!(c, Err(MessagingError::Timeout)), "{c:?}");
    within(&rt, "job c removed", async {
        while !bucket_keys(&rt, &cs[0], "messaging.compcon.ns.jobs")
            .await
            .is_empty()
        {
            rt.sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // A consumer is asked about a job at most once: one it does not
    // support is never asked about again (job 2 stayed unclaimed for
    // 800 ms, eight re-query intervals). A job the other consumer claimed
    // first may never be asked about at all.
    for (own, asked) in asked.iter().enumerate() {
        let mut asked = asked.lock().expect("asked").clone();
        asked.sort();
        let before = asked.len();
        asked.dedup();
        assert_eq!(asked.len(), before, "asked twice: {asked:?}");
        assert!(
            asked.contains(&(own as i64)) && asked.contains(&2),
            "{asked:?}"
        );
    }
    drop(consumers);
    close_all(&cs).await;
    server.shutdown();
}

pub async fn no_worker_free_for_a_while<R: Runtime + Clone>(rt: R) {
    let server = server();
    let cs = clients(&rt, server.addr(), 2).await;
    let log = Arc::new(Mutex::new(BTreeMap::new()));
    let worker = TestWorker::new(
        "only".into(),
        rt.clone(),
        Duration::from_millis(250),
        log.clone(),
    );
    let queries = Arc::new(AtomicUsize::new(0));
    let consumer = worker_consumer(&cs[1], "one", vec![worker.clone()], queries.clone()).await;
    settled(&rt, &cs[1]).await;
    let producer = Producer::new(&cs[0], "one", LONG, LONG)
        .await
        .expect("producer");
    let jobs = (0..3).map(|n| {
        let producer = producer.clone();
        async move { producer.add_job::<_, Value>(&json!({"n": n})).await }
    });
    let results = within(&rt, "3 jobs", futures_util::future::join_all(jobs)).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    // One at a time, each once; the waiting jobs were asked about again
    // (about every 100 ms) until the worker was free.
    assert_eq!(worker.max_running.load(Ordering::SeqCst), 1);
    assert_eq!(log.lock().expect("log").len(), 3);
    let asked = queries.load(Ordering::SeqCst);
    assert!(asked > 3, "asked {asked} times");
    drop(consumer);
    close_all(&cs).await;
    server.shutdown();
}

pub async fn serve_with_a_concurrency_limit<R: Runtime + Clone>(rt: R) {
    let server = server();
    let cs = clients(&rt, server.addr(), 2).await;
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let mut consumer = CompetingConsumer::new(&cs[1], "double")
        .await
        .expect("consumer");
    {
        let (rt, running, most) = (rt.clone(), running.clone(), most.clone());
        consumer.serve(2, move |job, progress| {
            let (rt, running, most) = (rt.clone(), running.clone(), most.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                progress.send(&"started").map_err(|e| e.to_string())?;
                rt.sleep(Duration::from_millis(30)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                let n = job["n"].as_i64().ok_or("no n")?;
                Ok::<_, String>(n * 2)
            }
        });
    }
    settled(&rt, &cs[1]).await;
    let producer = Producer::new(&cs[0], "double", LONG, LONG)
        .await
        .expect("producer");
    let jobs = (0..10).map(|n| {
        let producer = producer.clone();
        async move { producer.add_job::<_, i64>(&json!({"n": n})).await }
    });
    let results = within(&rt, "10 jobs", futures_util::future::join_all(jobs)).await;
    for (n, r) in results.into_iter().enumerate() {
        assert_eq!(r.expect("done"), 2 * n as i64);
    }
    assert!(
        most.load(Ordering::SeqCst) <= 2,
        "{}",
        most.load(Ordering::SeqCst)
    );
    // Progress reaches the producer; the worker's error comes back as sent.
    let mut job = producer
        .add_job_with_progress::<_, i64>(&json!({"n": 21}))
        .await
        .expect("sent");
    assert_eq!(
        within(&rt, "progress", job.next()).await,
        Some(json!("started"))
    );
    assert_eq!(job.result().await.expect("done"), 42);
    let err = producer.add_job::<_, i64>(&json!({})).await.unwrap_err();
    assert_eq!(err.remote(), Some(&json!("no n")));

    // A worker that drops its job unfinished fails the job at once.
    struct Careless;
    impl Worker for Careless {
        fn id(&self) -> &str {
            "careless"
        }
        fn available(&self) -> bool {
            true
        }
        fn work(&self, _job: Value, _done: JobDone, _progress: JobProgress) {}
        fn release(&self) {}
    }
    let mut careless = CompetingConsumer::new(&cs[1], "careless")
        .await
        .expect("consumer");
    careless.on_job_query(|_, callback| callback.accept(Arc::new(Careless)));
    settled(&rt, &cs[1]).await;
    let producer = Producer::new(&cs[0], "careless", LONG, LONG)
        .await
        .expect("producer");
    let err = within(
        &rt,
        "the dropped job",
        producer.add_job::<_, Value>(&json!(1)),
    )
    .await
    .unwrap_err();
    assert!(err.remote().is_some_and(Value::is_string), "{err:?}");
    drop((consumer, careless));
    close_all(&cs).await;
    server.shutdown();
}

pub async fn consumer_disconnects_mid_job<R: Runtime + Clone>(rt: R) {
    let server = server();
    let cs = clients(&rt, server.addr(), 2).await;
    let (boss, doomed) = (&cs[0], &cs[1]);
    // A worker that starts and never finishes (it keeps `done`).
    struct Hanging {
        started: async_channel::Sender<()>,
        kept: Mutex<Vec<JobDone>>,
    }
    impl Worker for Hanging {
        fn id(&self) -> &str {
            "hanging"
        }
        fn available(&self) -> bool {
            true
        }
        fn work(&self, _job: Value, done: JobDone, _progress: JobProgress) {
            self.kept.lock().expect("kept").push(done);
            let _ = self.started.try_send(());
        }
        fn release(&self) {}
    }
    let (started_tx, started_rx) = async_channel::bounded(1);
    let worker = Arc::new(Hanging {
        started: started_tx,
        kept: Mutex::new(Vec::new()),
    });
    let mut consumer = CompetingConsumer::new(doomed, "doom")
        .await
        .expect("consumer");
    {
        let worker = worker.clone();
        consumer.on_job_query(move |_, callback| callback.accept(worker.clone()));
    }
    settled(&rt, doomed).await;
    let producer = Producer::new(
        boss,
        "doom",
        Duration::from_secs(3),
        Duration::from_millis(500),
    )
    .await
    .expect("producer");
    let die = async {
        within(&rt, "the job to start", started_rx.recv())
            .await
            .expect("started");
        doomed.close().await;
    };
    let started = Instant::now();
    let (result, ()) =
        futures_lite::future::zip(producer.add_job::<_, Value>(&json!({"n": 1})), die).await;
    // The producer times out cleanly (its progress timer ran out first).
    assert!(
        matches!(result, Err(MessagingError::ProgressTimeout)),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    // The claimed job is not offered again: the jobs bucket is empty.
    assert!(bucket_keys(&rt, boss, "messaging.compcon.doom.jobs")
        .await
        .is_empty());
    drop(consumer);
    // Finishing after the client closed reports Closed and does not panic.
    let kept = worker.kept.lock().expect("kept").pop();
    if let Some(done) = kept {
        assert!(matches!(done.ok(&1), Err(MessagingError::Closed)));
    }
    boss.close().await;
    server.shutdown();
}

pub async fn messaging_close_and_offline<R: Runtime + Clone>(rt: R) {
    let server = server();
    let cs = clients(&rt, server.addr(), 1).await;
    let c = &cs[0];

    // Closing a requestor (through any clone) fails its pending requests.
    let requestor = Requestor::new(c, "nobody", LONG, LONG)
        .await
        .expect("requestor");
    let clone = requestor.clone();
    let closer = async {
        rt.sleep(Duration::from_millis(100)).await;
        clone.close();
    };
    let (result, ()) = futures_lite::future::zip(requestor.request::<_, Value>(&1), closer).await;
    assert!(matches!(result, Err(MessagingError::Closed)), "{result:?}");
    let result = requestor.request::<_, Value>(&2).await;
    assert!(matches!(result, Err(MessagingError::Closed)), "{result:?}");

    // Closing the client fails pending jobs and ends replier streams.
    let producer = Producer::new(c, "nobody", LONG, LONG)
        .await
        .expect("producer");
    let mut replier = Replier::new(c, "r").await.expect("replier");
    let closer = async {
        rt.sleep(Duration::from_millis(100)).await;
        c.close().await;
    };
    let (result, ()) = futures_lite::future::zip(producer.add_job::<_, Value>(&1), closer).await;
    assert!(matches!(result, Err(MessagingError::Closed)), "{result:?}");
    assert!(within(&rt, "the stream to end", replier.next())
        .await
        .is_none());
    assert!(matches!(
        producer.add_job::<_, Value>(&1).await,
        Err(MessagingError::Closed)
    ));
    assert!(matches!(
        Requestor::new(c, "x", LONG, LONG).await,
        Err(MessagingError::Closed)
    ));
    assert!(matches!(
        Replier::new(c, "x").await,
        Err(MessagingError::Closed)
    ));
    assert!(matches!(
        CompetingConsumer::new(c, "x").await,
        Err(MessagingError::Closed)
    ));
    let err: cachearoo::Error = MessagingError::Closed.into();
    assert!(err.is_closed());

    // Without a WebSocket a request fails at once.
    let offline = Cachearoo::new(options(([127, 0, 0, 1], free_port()).into()), rt.clone());
    let requestor = Requestor::new(&offline, "x", LONG, LONG)
        .await
        .expect("requestor");
    let result = within(&rt, "a request", requestor.request::<_, Value>(&1)).await;
    assert!(
        matches!(result, Err(MessagingError::NotConnected)),
        "{result:?}"
    );
    offline.close().await;
    server.shutdown();
}
