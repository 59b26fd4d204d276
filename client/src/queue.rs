//! Bounded event queues that never block the driver: when a consumer falls
//! behind, the oldest queued event is dropped and counted, and the consumer
//! is told how many it missed (like the `Lagged` of broadcast channels).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use async_channel::{Receiver, Sender, TrySendError};
use futures_lite::Stream;

/// Events were dropped because the consumer did not keep up: the number
/// dropped since the last item (or the last `Lagged`).
///
/// The item after a `Lagged(n)` is the oldest event still queued; the `n`
/// events before it were lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the consumer lagged behind: {0} events dropped")]
pub struct Lagged(pub u64);

/// The driver's end of a queue.
pub(crate) struct LagSender<T> {
    tx: Sender<T>,
    /// The driver's own receiver, used only to drop the oldest item (boxed
    /// to keep the driver `Unpin`: async-channel's receiver is not).
    rx: Box<Receiver<T>>,
    lagged: Arc<AtomicU64>,
    /// Most items held at once.
    capacity: usize,
}

/// The consumer's end of a queue.
pub(crate) struct LagReceiver<T> {
    // Boxed because async-channel's receiver is `!Unpin`.
    rx: Pin<Box<Receiver<T>>>,
    lagged: Arc<AtomicU64>,
}

/// A queue holding at most `capacity` items (at least one).
///
/// The channel itself is unbounded and the capacity is enforced in
/// [`LagSender::send`]: a bounded channel allocates all its slots up front,
/// 67 KB for an idle listener with the default 256 (BENCHMARKS.md).
pub(crate) fn lag_queue<T>(capacity: usize) -> (LagSender<T>, LagReceiver<T>) {
    let (tx, rx) = async_channel::unbounded();
    let lagged = Arc::new(AtomicU64::new(0));
    (
        LagSender {
            tx,
            rx: Box::new(rx.clone()),
            lagged: lagged.clone(),
            capacity: capacity.max(1),
        },
        LagReceiver {
            rx: Box::pin(rx),
            lagged,
        },
    )
}

impl<T> LagSender<T> {
    /// Queues `item`, dropping the oldest items while the queue is full.
    /// `false` when the consumer is gone.
    pub(crate) fn send(&self, item: T) -> bool {
        if self.is_abandoned() {
            return false;
        }
        // Only the driver sends, so the length cannot grow between the
        // check and the send; the consumer can only shrink it.
        while self.tx.len() >= self.capacity {
            if self.rx.try_recv().is_ok() {
                self.lagged.fetch_add(1, Ordering::Relaxed);
            } else {
                break;
            }
        }
        match self.tx.try_send(item) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Closed(_)) => false,
        }
    }

    /// Whether the consumer's end was dropped (only our own receiver is left).
    pub(crate) fn is_abandoned(&self) -> bool {
        self.tx.receiver_count() <= 1
    }
}

impl<T> Stream for LagReceiver<T> {
    type Item = Result<T, Lagged>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let missed = self.lagged.swap(0, Ordering::Relaxed);
        if missed > 0 {
            return Poll::Ready(Some(Err(Lagged(missed))));
        }
        self.rx.as_mut().poll_next(cx).map(|o| o.map(Ok))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::{future, StreamExt};

    #[test]
    fn drops_oldest_and_reports_the_count() {
        let (tx, mut rx) = lag_queue(3);
        for i in 0..10 {
            assert!(tx.send(i));
        }
        future::block_on(async {
            assert_eq!(rx.next().await, Some(Err(Lagged(7))));
            assert_eq!(rx.next().await, Some(Ok(7)));
            assert_eq!(rx.next().await, Some(Ok(8)));
            assert_eq!(rx.next().await, Some(Ok(9)));
            drop(tx);
            assert_eq!(rx.next().await, None);
        });
    }

    #[test]
    fn knows_when_the_consumer_left() {
        let (tx, rx) = lag_queue::<u8>(1);
        assert!(!tx.is_abandoned());
        drop(rx);
        assert!(tx.is_abandoned());
        assert!(!tx.send(1));
    }
}
