//! JS: `new Producer(cro, 'images', timeout).addJob(job)`, and
//! `new CompetingConsumer(cro, 'images')` with `consumer.onJobQuery = (job,
//! callback) => ...` handing out workers (`id`, `available`, `work(job,
//! done, progress)`, `release`). Two consumers with two workers each
//! compete for ten jobs; a job nobody supports times out; a third consumer
//! shows the async form (`serve`) on another channel.
//!
//! ```sh
//! cargo run -p cachearoo-examples --example competing_consumers            # embedded server
//! cargo run -p cachearoo-examples --example competing_consumers -- HOST:PORT
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cachearoo_examples::Target;
use cachearoo_smol::{
    connect, Cachearoo, CompetingConsumer, JobDone, JobProgress, MessagingError, Producer,
    StreamExt, Worker,
};
use serde_json::{json, Value};

/// A worker as in JS: busy while it works a job.
struct Resizer {
    id: String,
    busy: AtomicBool,
}

impl Worker for Resizer {
    fn id(&self) -> &str {
        &self.id
    }

    fn available(&self) -> bool {
        !self.busy.load(Ordering::SeqCst)
    }

    fn work(&self, job: Value, done: JobDone, progress: JobProgress) {
        // `work` must not block: the job runs in a task of its own.
        let id = self.id.clone();
        smol::spawn(async move {
            let _ = progress.send(&"resizing");
            smol::Timer::after(Duration::from_millis(50)).await;
            let _ = done.ok(&json!({"image": job["image"], "by": id}));
        })
        .detach();
    }

    fn release(&self) {
        self.busy.store(false, Ordering::SeqCst);
    }
}

/// A consumer with two workers that only takes jobs with an `image`.
async fn consumer(cro: &Cachearoo, name: &str) -> Result<CompetingConsumer, MessagingError> {
    let workers: Vec<Arc<Resizer>> = (0..2)
        .map(|i| {
            Arc::new(Resizer {
                id: format!("{name}/worker{i}"),
                busy: AtomicBool::new(false),
            })
        })
        .collect();
    let mut consumer = CompetingConsumer::with_id(cro, "images", name).await?;
    consumer.on_job_query(move |job, callback| {
        if job.get("image").is_none() {
            // JS: callback(JOB_NOT_SUPPORTED); this job is never offered again.
            return callback.not_supported();
        }
        let free = workers.iter().find(|w| {
            w.busy
                .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        });
        match free {
            Some(worker) => callback.accept(worker.clone()),
            // JS: callback(NO_WORKER_AVAILABLE); asked again in ~100 ms.
            None => callback.no_worker_available(),
        }
    });
    Ok(consumer)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = Target::from_args()?;
    smol::block_on(async {
        // One client per role: a client never sees its own writes' events.
        let office = connect(target.options.clone().client_id("producer"));
        let shop_a = connect(target.options.clone().client_id("consumer-a"));
        let shop_b = connect(target.options.clone().client_id("consumer-b"));
        for c in [&office, &shop_a, &shop_b] {
            c.connection().wait_connected().await?;
        }
        let _a = consumer(&shop_a, "consumer-a").await?;
        let _b = consumer(&shop_b, "consumer-b").await?;
        // The async form: at most two jobs at once, each a task.
        let mut thumbnails = CompetingConsumer::new(&shop_b, "thumbnails").await?;
        thumbnails.serve(2, |job, progress| async move {
            let _ = progress.send(&"scaling down");
            let size = job["size"].as_u64().ok_or("no size")?;
            Ok::<_, &str>(json!({"size": size / 10}))
        });
        // The server learns of subscriptions without answering; once a
        // request of each consumer's client is answered, it has them.
        shop_a.list().await?;
        shop_b.list().await?;

        let producer = Producer::new(
            &office,
            "images",
            Duration::from_secs(10),
            Duration::from_secs(5),
        )
        .await?;
        // Ten jobs at once, each awaited in a task of its own.
        let jobs: Vec<_> = (0..10)
            .map(|i| {
                let producer = producer.clone();
                smol::spawn(async move {
                    let job = json!({"image": format!("photo{i}.jpg")});
                    (i, producer.add_job::<_, Value>(&job).await)
                })
            })
            .collect();
        for job in jobs {
            match job.await {
                (i, Ok(result)) => println!("job {i}: {} by {}", result["image"], result["by"]),
                (i, Err(e)) => println!("job {i} failed: {e}"),
            }
        }

        // Nobody supports this one: the producer times out and takes it back.
        let impatient = Producer::new(
            &office,
            "images",
            Duration::from_millis(500),
            Duration::from_millis(500),
        )
        .await?;
        match impatient
            .add_job::<_, Value>(&json!({"video": "clip.mp4"}))
            .await
        {
            Err(e) => println!("video job: {e}"),
            Ok(v) => println!("video job: unexpected {v}"),
        }

        // The async consumer, with progress and an error.
        let small = Producer::new(
            &office,
            "thumbnails",
            Duration::from_secs(5),
            Duration::from_secs(5),
        )
        .await?;
        let mut job = small
            .add_job_with_progress::<_, Value>(&json!({"size": 640}))
            .await?;
        while let Some(progress) = job.next().await {
            println!("thumbnail progress: {progress}");
        }
        println!("thumbnail: {}", job.result().await?);
        if let Err(e) = small.add_job::<_, Value>(&json!({})).await {
            println!("thumbnail without a size: {e}");
        }

        for c in [office, shop_a, shop_b] {
            c.close().await;
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    target.finish();
    Ok(())
}
