//! Request–reply and competing consumers, deterministically: several client
//! cores relayed through the server's hub over the simulated network.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cachearoo_core::{
    Config, ConsumerId, Event, Instant, JobAnswer, JobId, MessagingError, MessagingEvent, TaskId,
};
use cachearoo_tests::sim::{NetConfig, World};
use serde_json::{json, Value};

fn config(id: &str) -> Config {
    Config {
        client_id: Some(id.into()),
        enable_ping: false,
        ..Config::default()
    }
}

fn world(seed: u64, n: usize) -> World {
    let mut w = World::new(
        seed,
        NetConfig {
            latency: Duration::from_millis(2),
            jitter: Duration::from_millis(3),
        },
    );
    for i in 0..n {
        w.add_client(config(&format!("c{i}")));
    }
    assert!(w.connect_all());
    for i in 0..n {
        w.take_events(i);
    }
    w
}

fn messaging_events(w: &mut World, i: usize) -> Vec<MessagingEvent> {
    w.take_events(i)
        .into_iter()
        .filter_map(|e| match e {
            Event::Messaging(m) => Some(m),
            _ => None,
        })
        .collect()
}

const S: Duration = Duration::from_secs(1);

#[test]
fn request_progress_reply() {
    let mut w = world(1, 2);
    let now = w.now;
    let rq = w.clients[0]
        .core
        .create_requestor(now, "math", 5 * S, 2 * S);
    let rp = w.clients[1].core.create_replier(now, "math");
    w.pump_client(0);
    w.pump_client(1);
    w.run_for(Duration::from_millis(50));
    let req = w.clients[0]
        .core
        .request(w.now, rq, json!({"op":"add","a":7,"b":8}));
    w.pump_client(0);
    w.run_for(Duration::from_millis(50));
    let ev = messaging_events(&mut w, 1);
    let [MessagingEvent::IncomingRequest {
        replier,
        incoming,
        message,
    }] = ev.as_slice()
    else {
        panic!("{ev:?}")
    };
    assert_eq!(*replier, rp);
    assert_eq!(message, &json!({"op":"add","a":7,"b":8}));
    let incoming = *incoming;
    w.clients[1]
        .core
        .send_progress(w.now, incoming, json!({"pct": 50}))
        .unwrap();
    w.pump_client(1);
    w.run_for(Duration::from_millis(50));
    assert_eq!(
        messaging_events(&mut w, 0),
        vec![MessagingEvent::RequestProgress {
            request: req,
            data: json!({"pct": 50})
        }]
    );
    w.clients[1]
        .core
        .reply(w.now, incoming, Ok(json!({"result": 15})))
        .unwrap();
    // Once only.
    assert!(w.clients[1]
        .core
        .reply(w.now, incoming, Ok(json!(0)))
        .is_err());
    w.pump_client(1);
    w.run_for(Duration::from_millis(50));
    assert_eq!(
        messaging_events(&mut w, 0),
        vec![MessagingEvent::RequestDone {
            request: req,
            result: Ok(json!({"result": 15}))
        }]
    );
    // The replier saw its own reply? Never: the server does not echo.
    assert!(messaging_events(&mut w, 1).is_empty());
    assert!(w.clients[0].core.messaging_idle());

    // Wire shapes of PROTOCOL.md §7.1.
    let frames: Vec<(usize, Value)> = w
        .frames_to_hub
        .iter()
        .map(|(c, t)| (*c, serde_json::from_str(t).unwrap()))
        .collect();
    let reg0 = frames
        .iter()
        .find(|(c, f)| *c == 0 && f["msg"] == "register-events")
        .unwrap();
    assert_eq!(
        reg0.1,
        json!({"msg":"register-events","events":[{"bucket":"#reqrep-progress/math","key":"*"},{"bucket":"#reqrep/math","key":"*"}],"sendValues":true})
    );
    let signals: Vec<&Value> = frames
        .iter()
        .filter(|(_, f)| f["msg"] == "event-broadcast")
        .map(|(_, f)| f)
        .collect();
    assert_eq!(signals.len(), 3);
    let uuid = signals[0]["event"]["key"].as_str().unwrap().to_string();
    assert_eq!(uuid.len(), 36);
    assert_eq!(uuid.as_bytes()[14], b'4', "uuid v4");
    assert_eq!(
        *signals[0],
        json!({"msg":"event-broadcast","event":{"bucket":"#reqrep/math","key":uuid,"value":{"op":"add","a":7,"b":8}}})
    );
    assert_eq!(
        *signals[1],
        json!({"msg":"event-broadcast","event":{"bucket":"#reqrep-progress/math","key":uuid,"value":{"data":{"pct":50}}}})
    );
    assert_eq!(
        *signals[2],
        json!({"msg":"event-broadcast","event":{"bucket":"#reqrep/math","key":uuid,"value":{"err":null,"data":{"result":15}}}})
    );
}

#[test]
fn timeout_progress_timeout_and_late_reply_dropped() {
    let mut w = world(2, 2);
    let now = w.now;
    let rq = w.clients[0].core.create_requestor(now, "slow", 3 * S, S);
    w.clients[1].core.create_replier(now, "slow");
    w.pump_client(0);
    w.pump_client(1);
    w.run_for(Duration::from_millis(50));

    // Nobody answers: the progress timeout (1 s) fires first.
    let a = w.clients[0].core.request(w.now, rq, json!(1));
    w.pump_client(0);
    w.run_for(Duration::from_millis(1100));
    let ev = messaging_events(&mut w, 0);
    assert_eq!(
        ev,
        vec![MessagingEvent::RequestDone {
            request: a,
            result: Err(MessagingError::ProgressTimeout)
        }]
    );
    // The replier answers late: dropped, no second completion.
    let incoming = match messaging_events(&mut w, 1).as_slice() {
        [MessagingEvent::IncomingRequest { incoming, .. }] => *incoming,
        other => panic!("{other:?}"),
    };
    w.clients[1]
        .core
        .reply(w.now, incoming, Ok(json!("late")))
        .unwrap();
    w.pump_client(1);
    w.run_for(S);
    assert!(messaging_events(&mut w, 0).is_empty());

    // Progress keeps it alive past the progress timeout; the overall timeout still ends it.
    let b = w.clients[0].core.request(w.now, rq, json!(2));
    w.pump_client(0);
    w.run_for(Duration::from_millis(50));
    let incoming = match messaging_events(&mut w, 1).as_slice() {
        [MessagingEvent::IncomingRequest { incoming, .. }] => *incoming,
        other => panic!("{other:?}"),
    };
    for _ in 0..5 {
        w.clients[1]
            .core
            .send_progress(w.now, incoming, json!("working"))
            .unwrap();
        w.pump_client(1);
        w.run_for(Duration::from_millis(700));
    }
    let ev = messaging_events(&mut w, 0);
    let progress = ev
        .iter()
        .filter(|e| matches!(e, MessagingEvent::RequestProgress { .. }))
        .count();
    assert!(progress >= 4, "{ev:?}");
    assert_eq!(
        ev.last(),
        Some(&MessagingEvent::RequestDone {
            request: b,
            result: Err(MessagingError::Timeout)
        })
    );
    // Remote errors are distinguishable.
    let c = w.clients[0].core.request(w.now, rq, json!(3));
    w.pump_client(0);
    w.run_for(Duration::from_millis(50));
    let incoming = match messaging_events(&mut w, 1).as_slice() {
        [MessagingEvent::IncomingRequest { incoming, .. }] => *incoming,
        other => panic!("{other:?}"),
    };
    w.clients[1]
        .core
        .reply(w.now, incoming, Err(json!("division by zero")))
        .unwrap();
    w.pump_client(1);
    w.run_for(Duration::from_millis(50));
    assert_eq!(
        messaging_events(&mut w, 0),
        vec![MessagingEvent::RequestDone {
            request: c,
            result: Err(MessagingError::Remote(json!("division by zero")))
        }]
    );
}

#[test]
fn two_repliers_never_answer_a_reply() {
    let mut w = world(3, 3);
    let now = w.now;
    let rq = w.clients[0].core.create_requestor(now, "ch", 5 * S, 5 * S);
    w.clients[1].core.create_replier(now, "ch");
    w.clients[2].core.create_replier(now, "ch");
    for i in 0..3 {
        w.pump_client(i);
    }
    w.run_for(Duration::from_millis(50));
    let mut done = Vec::new();
    for n in 0..20 {
        let r = w.clients[0].core.request(w.now, rq, json!(n));
        w.pump_client(0);
        w.run_for(Duration::from_millis(30));
        // Both repliers see the request; both answer (as a careless app would).
        for rep in [1, 2] {
            for e in messaging_events(&mut w, rep) {
                if let MessagingEvent::IncomingRequest {
                    incoming, message, ..
                } = e
                {
                    assert_eq!(message, json!(n));
                    w.clients[rep]
                        .core
                        .reply(w.now, incoming, Ok(json!(rep)))
                        .unwrap();
                    w.pump_client(rep);
                }
            }
        }
        w.run_for(Duration::from_millis(30));
        // Neither replier treats the other's reply as a new request.
        assert!(messaging_events(&mut w, 1).is_empty());
        assert!(messaging_events(&mut w, 2).is_empty());
        for e in messaging_events(&mut w, 0) {
            if let MessagingEvent::RequestDone { request, result } = e {
                assert_eq!(request, r);
                assert!(result.is_ok());
                done.push(request);
            }
        }
    }
    assert_eq!(done.len(), 20, "exactly one completion per request");
}

/// Test-side model of a consumer application with a number of workers.
struct ConsumerApp {
    client: usize,
    free_workers: usize,
    supports: bool,
    /// Tasks started and when their work finishes.
    working: BTreeMap<TaskId, Instant>,
    started: Vec<Value>,
}

fn run_jobs(
    seed: u64,
    consumers: usize,
    workers: usize,
    jobs: usize,
    work: Duration,
) -> (
    World,
    Vec<ConsumerApp>,
    BTreeMap<JobId, Result<Value, MessagingError>>,
) {
    let mut w = world(seed, consumers + 1);
    let now = w.now;
    let producer = w.clients[0]
        .core
        .create_producer(now, "jobs", 30 * S, 10 * S);
    let mut apps: Vec<ConsumerApp> = (1..=consumers)
        .map(|c| {
            w.clients[c]
                .core
                .create_consumer(now, "jobs", Some(&format!("consumer-{c}")));
            ConsumerApp {
                client: c,
                free_workers: workers,
                supports: true,
                working: BTreeMap::new(),
                started: Vec::new(),
            }
        })
        .collect();
    for i in 0..=consumers {
        w.pump_client(i);
    }
    w.run_for(Duration::from_millis(50));
    let mut ids = BTreeSet::new();
    for n in 0..jobs {
        ids.insert(w.clients[0].core.add_job(w.now, producer, json!({"n": n})));
    }
    w.pump_client(0);
    let mut results = BTreeMap::new();
    let limit = w.now + Duration::from_secs(120);
    while results.len() < jobs && w.now < limit {
        // Earliest of: the world's next event, a worker finishing.
        let next_work = apps.iter().flat_map(|a| a.working.values().copied()).min();
        let next_world = w.next_time();
        match next_work {
            Some(t) if next_world.is_none_or(|n| t <= n) => w.run_until(t),
            _ if next_world.is_some() => {
                w.step();
            }
            _ => break,
        }
        let now = w.now;
        for app in &mut apps {
            let finished: Vec<TaskId> = app
                .working
                .iter()
                .filter(|(_, t)| **t <= now)
                .map(|(k, _)| *k)
                .collect();
            for task in finished {
                app.working.remove(&task);
                w.clients[app.client]
                    .core
                    .job_progress(now, task, json!("half"))
                    .unwrap();
                w.clients[app.client]
                    .core
                    .job_done(now, task, Ok(json!({"by": app.client})))
                    .unwrap();
                app.free_workers += 1;
                w.pump_client(app.client);
            }
            for e in messaging_events(&mut w, app.client) {
                match e {
                    MessagingEvent::JobQuery { task, .. } => {
                        let answer = if !app.supports {
                            JobAnswer::NotSupported
                        } else if app.free_workers > 0 {
                            app.free_workers -= 1;
                            JobAnswer::Accept
                        } else {
                            JobAnswer::NoWorkerAvailable
                        };
                        w.clients[app.client]
                            .core
                            .answer_job_query(now, task, answer);
                    }
                    MessagingEvent::JobStarted { task, job, .. } => {
                        app.started.push(job);
                        app.working.insert(task, now + work);
                    }
                    MessagingEvent::JobLost { .. } => app.free_workers += 1,
                    other => panic!("unexpected {other:?}"),
                }
                w.pump_client(app.client);
            }
        }
        for e in messaging_events(&mut w, 0) {
            if let MessagingEvent::JobDone { job, result } = e {
                assert!(ids.contains(&job));
                assert!(results.insert(job, result).is_none(), "job completed twice");
            }
        }
    }
    (w, apps, results)
}

#[test]
fn three_consumers_two_workers_hundred_jobs_each_done_once() {
    let (mut w, apps, results) = run_jobs(4, 3, 2, 100, Duration::from_millis(25));
    assert_eq!(results.len(), 100);
    assert!(results.values().all(|r| r.is_ok()), "{results:?}");
    let mut worked: Vec<i64> = apps
        .iter()
        .flat_map(|a| a.started.iter().map(|j| j["n"].as_i64().unwrap()))
        .collect();
    worked.sort();
    assert_eq!(
        worked,
        (0..100).collect::<Vec<_>>(),
        "every job worked exactly once"
    );
    assert!(
        apps.iter().all(|a| !a.started.is_empty()),
        "the load was shared"
    );
    // The producer removed the status keys; the consumers removed the jobs.
    w.run_for(S);
    let now_ms = w.now_ms();
    for bucket in [
        "messaging.compcon.jobs.jobs",
        "messaging.compcon.jobs.status",
    ] {
        let resp = w.hub.handle_rest(
            &cachearoo_server::hub::RestRequest::new(
                "GET",
                &format!("/_data/{bucket}?keysOnly=true"),
            ),
            now_ms,
        );
        assert_eq!(resp.text(), "[]", "{bucket}");
    }
    // Status objects have the §7.2 shape.
    let claim = w
        .frames_to_hub
        .iter()
        .map(|(_, t)| serde_json::from_str::<Value>(t).unwrap())
        .find(|f| f["request"]["failIfExists"] == true)
        .unwrap();
    assert_eq!(claim["request"]["bucket"], "messaging.compcon.jobs.status");
    let v = &claim["request"]["value"];
    assert!(v["claim"]["id"].as_str().unwrap().starts_with("consumer-"));
    assert_eq!(
        (
            v["done"].clone(),
            v["err"].clone(),
            v["data"].clone(),
            v["progress"].clone()
        ),
        (json!(false), Value::Null, Value::Null, Value::Null)
    );
    let done = w
        .frames_to_hub
        .iter()
        .map(|(_, t)| serde_json::from_str::<Value>(t).unwrap())
        .find(|f| f["request"]["value"]["done"] == true)
        .unwrap();
    assert_eq!(done["request"]["value"]["progress"], "half");
    assert!(done["request"]["value"]["data"]["by"].is_number());
}

#[test]
fn no_worker_free_for_a_while_then_claimed() {
    // One consumer, one worker, slow work: later jobs wait (re-asked every
    // ~100 ms) until the worker is free.
    let (_, apps, results) = run_jobs(5, 1, 1, 5, Duration::from_millis(400));
    assert_eq!(results.len(), 5);
    assert!(results.values().all(|r| r.is_ok()));
    assert_eq!(apps[0].started.len(), 5);
}

#[test]
fn job_not_supported_is_left_to_others_and_times_out_alone() {
    let mut w = world(6, 2);
    let now = w.now;
    let producer = w.clients[0].core.create_producer(now, "x", 3 * S, 2 * S);
    let consumer: ConsumerId = w.clients[1].core.create_consumer(now, "x", None);
    w.pump_client(0);
    w.pump_client(1);
    w.run_for(Duration::from_millis(50));
    let job = w.clients[0]
        .core
        .add_job(w.now, producer, json!("unsupported"));
    w.pump_client(0);
    w.run_for(Duration::from_millis(100));
    let ev = messaging_events(&mut w, 1);
    let [MessagingEvent::JobQuery {
        consumer: c,
        task,
        job: j,
    }] = ev.as_slice()
    else {
        panic!("{ev:?}")
    };
    assert_eq!((*c, j), (consumer, &json!("unsupported")));
    w.clients[1]
        .core
        .answer_job_query(w.now, *task, JobAnswer::NotSupported);
    w.pump_client(1);
    w.run_for(3 * S);
    assert!(messaging_events(&mut w, 1).is_empty(), "never asked again");
    assert_eq!(
        messaging_events(&mut w, 0),
        vec![MessagingEvent::JobDone {
            job,
            result: Err(MessagingError::ProgressTimeout)
        }]
    );
    // The unclaimed job was taken back.
    w.run_for(S);
    let now_ms = w.now_ms();
    let resp = w.hub.handle_rest(
        &cachearoo_server::hub::RestRequest::new(
            "GET",
            "/_data/messaging.compcon.x.jobs?keysOnly=true",
        ),
        now_ms,
    );
    assert_eq!(resp.text(), "[]");
}

#[test]
fn consumer_dies_mid_job_producer_times_out_cleanly() {
    let mut w = world(7, 2);
    let now = w.now;
    let producer = w.clients[0].core.create_producer(now, "d", 3 * S, S);
    w.clients[1].core.create_consumer(now, "d", Some("mortal"));
    w.pump_client(0);
    w.pump_client(1);
    w.run_for(Duration::from_millis(50));
    let job = w.clients[0].core.add_job(w.now, producer, json!(1));
    w.pump_client(0);
    w.run_for(Duration::from_millis(100));
    let task = match messaging_events(&mut w, 1).as_slice() {
        [MessagingEvent::JobQuery { task, .. }] => *task,
        other => panic!("{other:?}"),
    };
    w.clients[1]
        .core
        .answer_job_query(w.now, task, JobAnswer::Accept);
    w.pump_client(1);
    w.run_for(Duration::from_millis(100));
    assert!(matches!(
        messaging_events(&mut w, 1).as_slice(),
        [MessagingEvent::JobStarted { .. }]
    ));
    // The consumer's process dies: close its client.
    w.clients[1].core.close(w.now);
    w.pump_client(1);
    w.run_for(2 * S);
    assert_eq!(
        messaging_events(&mut w, 0),
        vec![MessagingEvent::JobDone {
            job,
            result: Err(MessagingError::ProgressTimeout)
        }]
    );
    assert!(w.clients[0].core.messaging_idle());
    assert_eq!(w.clients[0].core.pending_operations(), 0);
}

/// A consumer that was disconnected while another claimed, finished and
/// cleaned up a job missed the job's delete event; when it later gets a free
/// worker it must not claim (and work) the job a second time.
#[test]
fn a_consumer_that_missed_the_delete_never_works_a_job_twice() {
    let mut w = world(8, 3);
    let now = w.now;
    let producer = w.clients[0]
        .core
        .create_producer(now, "twice", 10 * S, 10 * S);
    w.clients[1].core.create_consumer(now, "twice", Some("a"));
    w.clients[2].core.create_consumer(now, "twice", Some("b"));
    for i in 0..3 {
        w.pump_client(i);
    }
    w.run_for(Duration::from_millis(50));
    let job = w.clients[0].core.add_job(w.now, producer, json!("once"));
    w.pump_client(0);
    w.run_for(Duration::from_millis(60));
    let query = |w: &mut World, i: usize| match messaging_events(w, i).as_slice() {
        [MessagingEvent::JobQuery { task, .. }] => *task,
        other => panic!("client {i}: {other:?}"),
    };
    let (ta, tb) = (query(&mut w, 1), query(&mut w, 2));
    // B has no worker free; then B's link drops before A claims.
    w.clients[2]
        .core
        .answer_job_query(w.now, tb, JobAnswer::NoWorkerAvailable);
    w.pump_client(2);
    w.drop_connection(2);
    w.clients[1]
        .core
        .answer_job_query(w.now, ta, JobAnswer::Accept);
    w.pump_client(1);
    w.run_for(Duration::from_millis(30));
    assert!(matches!(
        messaging_events(&mut w, 1).as_slice(),
        [MessagingEvent::JobStarted { .. }]
    ));
    w.clients[1]
        .core
        .job_done(w.now, ta, Ok(json!("done by a")))
        .unwrap();
    w.pump_client(1);
    w.run_for(Duration::from_millis(50));
    assert_eq!(
        messaging_events(&mut w, 0),
        vec![MessagingEvent::JobDone {
            job,
            result: Ok(json!("done by a"))
        }]
    );
    // B reconnects and keeps asking; now it has a worker.
    w.run_for(S);
    let mut started = 0;
    let mut lost = 0;
    for _ in 0..20 {
        for e in messaging_events(&mut w, 2) {
            match e {
                MessagingEvent::JobQuery { task, .. } => {
                    w.clients[2]
                        .core
                        .answer_job_query(w.now, task, JobAnswer::Accept);
                    w.pump_client(2);
                }
                MessagingEvent::JobStarted { .. } => started += 1,
                MessagingEvent::JobLost { .. } => lost += 1,
                other => panic!("{other:?}"),
            }
        }
        w.run_for(Duration::from_millis(100));
    }
    assert_eq!(started, 0, "the job was worked twice");
    assert_eq!(lost, 1, "B's reserved worker is released");
    assert!(w.clients[2].core.messaging_idle());
}
