//! The [`Cachearoo`] handle and its datastore operations.

use std::collections::hash_map::RandomState;
use std::future::IntoFuture;
use std::hash::{BuildHasher, Hasher};
use std::marker::PhantomData;
use std::sync::Arc;

use async_channel::Sender;
use cachearoo_core::wire::ListItem;
use cachearoo_core::{Client, Instant, OpError, OpOptions, Operation, Reply};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::connection::Connection;
use crate::driver::{Driver, DriverParts};
use crate::error::Error;
use crate::options::Options;
use crate::runtime::{BoxFuture, Runtime};
use crate::shared::{Command, Outbox, Shared};

/// What every handle of one client shares. Dropping the last one closes
/// the `lifeline` channel, which tells the driver task to shut down.
pub(crate) struct Inner {
    pub(crate) commands: Sender<Command>,
    /// Fire-and-forget messaging answers (see [`Outbox`]).
    pub(crate) outbox: Sender<Outbox>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) listener_capacity: usize,
    /// For the tasks of messaging handlers (`on_message`, `serve`, ...).
    pub(crate) runtime: Arc<dyn Runtime>,
    done: async_channel::Receiver<()>,
    _lifeline: Sender<()>,
}

impl Inner {
    /// Sends a command to the driver; `false` if the driver has ended.
    pub(crate) async fn send(&self, command: Command) -> bool {
        self.commands.send(command).await.is_ok()
    }
}

/// A Cachearoo client: a cheap, clonable handle to one connection (made and
/// remade in the background by a driver task) and its REST fallback.
///
/// Every operation is a builder: set per-call options with its methods,
/// then `.await` it. Operations run concurrently and are pipelined on the
/// one WebSocket, each with its own timeout
/// ([`Options::request_timeout`]). While the WebSocket is down they go over
/// REST (reads and lists in flight when it drops are retried there; writes,
/// patches and removes in flight then fail with `OpError::Disconnected`
/// because they may or may not have been applied); `force_http()` sends one
/// over REST always.
///
/// The JS client's `async` option has no meaning here: every operation is
/// asynchronous and returns its result when awaited.
///
/// The client ends when [`Cachearoo::close`] is called or when the last
/// handle ([`Cachearoo`] or [`Connection`]) is dropped: pending operations
/// then fail with a closed error (see [`Error::is_closed`]), listener
/// streams end, and the driver task finishes.
#[derive(Clone)]
pub struct Cachearoo {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Cachearoo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cachearoo")
            .field("connected", &self.inner.shared.is_connected())
            .finish()
    }
}

impl Cachearoo {
    /// Creates a client and starts connecting in the background on
    /// `runtime`; returns at once (like `new Cachearoo(options)`).
    pub fn new(options: Options, runtime: impl Runtime) -> Cachearoo {
        let runtime: Arc<dyn Runtime> = Arc::new(runtime);
        let seed = options.seed.unwrap_or_else(random_seed);
        let epoch = std::time::Instant::now();
        let core = Client::new(options.core_config(), seed, Instant::ZERO);
        let (commands_tx, commands_rx) = async_channel::bounded(options.command_capacity.max(1));
        let (outbox_tx, outbox_rx) = async_channel::unbounded();
        let (lifeline_tx, lifeline_rx) = async_channel::bounded(1);
        let (done_tx, done_rx) = async_channel::bounded(1);
        let shared = Arc::new(Shared::default());
        let driver = Driver::new(DriverParts {
            core,
            epoch,
            runtime: runtime.clone(),
            tls_options: options.tls.clone(),
            shared: shared.clone(),
            commands: commands_rx,
            outbox: outbox_rx,
            lifeline: lifeline_rx,
            done: done_tx,
        });
        runtime.spawn(Box::pin(driver));
        Cachearoo {
            inner: Arc::new(Inner {
                commands: commands_tx,
                outbox: outbox_tx,
                shared,
                listener_capacity: options.listener_capacity,
                runtime,
                done: done_rx,
                _lifeline: lifeline_tx,
            }),
        }
    }

    /// The connection: listeners, events, signals, binary events, ping and
    /// connection state (JS `cachearoo.connection`).
    pub fn connection(&self) -> Connection {
        Connection {
            inner: self.inner.clone(),
        }
    }

    /// Whether the WebSocket is connected (greeted by the server).
    pub fn is_connected(&self) -> bool {
        self.inner.shared.is_connected()
    }

    /// Reads `key` and deserializes its value into `T`.
    ///
    /// A key stored without a value reads as JSON `null`: use `Option<T>`
    /// (or [`Value`]) when that can happen. A missing key fails with
    /// `OpError::NotFound` ([`Error::is_not_found`]).
    pub fn read<T: DeserializeOwned>(&self, key: impl Into<String>) -> Read<T> {
        Read {
            common: Common::new(self),
            key: key.into(),
            _value: PhantomData,
        }
    }

    /// Reads every key of the bucket, with content (JS `read` without a key).
    pub fn read_all(&self) -> List {
        List {
            common: Common::new(self),
            keys_only: false,
            filter: None,
            read_all: true,
        }
    }

    /// Lists the keys of the bucket (keys only by default).
    pub fn list(&self) -> List {
        List {
            common: Common::new(self),
            keys_only: true,
            filter: None,
            read_all: false,
        }
    }

    /// Writes `value` under `key`; an empty key lets the server generate
    /// one. Resolves to the key written.
    pub fn write<T: Serialize + ?Sized>(&self, key: impl Into<String>, value: &T) -> Write {
        Write {
            common: Common::new(self),
            key: key.into(),
            value: serde_json::to_value(value)
                .map(Some)
                .map_err(Error::Serialize),
            fail_if_exists: false,
            expire_session: false,
        }
    }

    /// Applies a JSON patch (RFC 6902) to the value of `key`: a
    /// [`json_patch::Patch`], or raw JSON (an array of operations, or one
    /// operation object). Resolves to the patched document (or `{}` with
    /// `remove_data_from_reply`).
    pub fn patch(&self, key: impl Into<String>, patch: impl IntoPatch) -> Patch {
        Patch {
            common: Common::new(self),
            key: key.into(),
            patch: patch.into_patch(),
            remove_data_from_reply: false,
        }
    }

    /// Removes `key` (a missing key still succeeds).
    pub fn remove(&self, key: impl Into<String>) -> Remove {
        Remove {
            common: Common::new(self),
            key: key.into(),
        }
    }

    /// Closes the client: the WebSocket is closed, pending operations fail
    /// with a closed error, listener streams end, and the driver task
    /// finishes before this returns. Other handles then fail with a closed
    /// error. Closing twice is harmless.
    pub async fn close(&self) {
        let _ = self.inner.send(Command::Close).await;
        // The driver drops the only sender when it ends.
        let _ = self.inner.done.recv().await;
    }

    /// Submits one operation and waits for its result.
    async fn submit(&self, op: Operation, options: OpOptions) -> Result<Reply, Error> {
        let (reply, result) = async_channel::bounded(1);
        if !self
            .inner
            .send(Command::Submit { op, options, reply })
            .await
        {
            return Err(OpError::Closed.into());
        }
        match result.recv().await {
            Ok(r) => r.map_err(Error::from),
            // The driver ended without answering: it was closed.
            Err(_) => Err(OpError::Closed.into()),
        }
    }
}

fn random_seed() -> u64 {
    // std's hasher keys are random per process and per `RandomState`.
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}

/// A patch document for [`Cachearoo::patch`]: a [`json_patch::Patch`], a
/// single [`json_patch::PatchOperation`], or raw JSON ([`Value`]).
pub trait IntoPatch {
    /// The patch as JSON.
    fn into_patch(self) -> Result<Value, Error>;
}

impl IntoPatch for json_patch::Patch {
    fn into_patch(self) -> Result<Value, Error> {
        serde_json::to_value(self).map_err(Error::Serialize)
    }
}

impl IntoPatch for &json_patch::Patch {
    fn into_patch(self) -> Result<Value, Error> {
        serde_json::to_value(self).map_err(Error::Serialize)
    }
}

impl IntoPatch for json_patch::PatchOperation {
    fn into_patch(self) -> Result<Value, Error> {
        serde_json::to_value(vec![self]).map_err(Error::Serialize)
    }
}

impl IntoPatch for Value {
    fn into_patch(self) -> Result<Value, Error> {
        Ok(self)
    }
}

/// Options every operation has.
#[derive(Clone)]
struct Common {
    client: Cachearoo,
    options: OpOptions,
}

impl Common {
    fn new(client: &Cachearoo) -> Self {
        Common {
            client: client.clone(),
            options: OpOptions::default(),
        }
    }
}

/// The builder methods every operation has.
macro_rules! common_options {
    ($t:ident $(<$g:ident>)?) => {
        impl$(<$g>)? $t$(<$g>)? {
            /// Uses `bucket` instead of the client's default bucket.
            pub fn bucket(mut self, bucket: impl Into<String>) -> Self {
                self.common.options.bucket = Some(bucket.into());
                self
            }

            /// Sends this operation over REST even while the WebSocket is connected.
            pub fn force_http(mut self) -> Self {
                self.common.options.force_http = true;
                self
            }
        }
    };
}

/// A read; see [`Cachearoo::read`]. Await it.
#[must_use = "an operation does nothing until awaited"]
pub struct Read<T> {
    common: Common,
    key: String,
    _value: PhantomData<fn() -> T>,
}
common_options!(Read<T>);

impl<T: DeserializeOwned + 'static> IntoFuture for Read<T> {
    type Output = Result<T, Error>;
    type IntoFuture = BoxFuture<'static, Result<T, Error>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let Common { client, options } = self.common;
            match client
                .submit(Operation::Read { key: self.key }, options)
                .await?
            {
                Reply::Value(v) => {
                    serde_json::from_value(v.unwrap_or(Value::Null)).map_err(Error::Deserialize)
                }
                other => Err(unexpected("read", &other)),
            }
        })
    }
}

/// A list (or read of a whole bucket); see [`Cachearoo::list`]. Await it.
#[must_use = "an operation does nothing until awaited"]
pub struct List {
    common: Common,
    keys_only: bool,
    filter: Option<String>,
    read_all: bool,
}
common_options!(List);

impl List {
    /// Whether to leave the values out (default `true` for `list`).
    pub fn keys_only(mut self, keys_only: bool) -> Self {
        self.keys_only = keys_only;
        self.read_all = false;
        self
    }

    /// Only keys starting with `prefix`.
    pub fn filter(mut self, prefix: impl Into<String>) -> Self {
        self.filter = Some(prefix.into());
        self.read_all = false;
        self
    }
}

impl IntoFuture for List {
    type Output = Result<Vec<ListItem>, Error>;
    type IntoFuture = BoxFuture<'static, Result<Vec<ListItem>, Error>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let Common { client, options } = self.common;
            let op = if self.read_all {
                Operation::Read { key: String::new() }
            } else {
                Operation::List {
                    keys_only: self.keys_only,
                    filter: self.filter,
                }
            };
            match client.submit(op, options).await? {
                Reply::List(items) => Ok(items),
                other => Err(unexpected("list", &other)),
            }
        })
    }
}

/// A write; see [`Cachearoo::write`]. Await it for the key written.
#[must_use = "an operation does nothing until awaited"]
pub struct Write {
    common: Common,
    key: String,
    value: Result<Option<Value>, Error>,
    fail_if_exists: bool,
    expire_session: bool,
}
common_options!(Write);

impl Write {
    /// Fails with `OpError::AlreadyExists` when the key exists.
    pub fn fail_if_exists(mut self) -> Self {
        self.fail_if_exists = true;
        self
    }

    /// Removes the key when this client's connection closes (JS
    /// `expire: "session"`). Only possible over the WebSocket: over REST it
    /// fails with `OpError::Unsupported`.
    pub fn expire_session(mut self) -> Self {
        self.expire_session = true;
        self
    }

    /// Writes the key without any value.
    pub fn without_value(mut self) -> Self {
        self.value = Ok(None);
        self
    }
}

impl IntoFuture for Write {
    type Output = Result<String, Error>;
    type IntoFuture = BoxFuture<'static, Result<String, Error>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let Common { client, options } = self.common;
            let op = Operation::Write {
                key: self.key,
                value: self.value?,
                fail_if_exists: self.fail_if_exists,
                expire_session: self.expire_session,
            };
            match client.submit(op, options).await? {
                Reply::Written { key } => Ok(key),
                other => Err(unexpected("write", &other)),
            }
        })
    }
}

/// A patch; see [`Cachearoo::patch`]. Await it for the patched document.
#[must_use = "an operation does nothing until awaited"]
pub struct Patch {
    common: Common,
    key: String,
    patch: Result<Value, Error>,
    remove_data_from_reply: bool,
}
common_options!(Patch);

impl Patch {
    /// Answers `{}` instead of the patched document.
    pub fn remove_data_from_reply(mut self) -> Self {
        self.remove_data_from_reply = true;
        self
    }
}

impl IntoFuture for Patch {
    type Output = Result<Value, Error>;
    type IntoFuture = BoxFuture<'static, Result<Value, Error>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let Common { client, options } = self.common;
            let op = Operation::Patch {
                key: self.key,
                patch: self.patch?,
                remove_data_from_reply: self.remove_data_from_reply,
            };
            match client.submit(op, options).await? {
                Reply::Patched(v) => Ok(v),
                other => Err(unexpected("patch", &other)),
            }
        })
    }
}

/// A remove; see [`Cachearoo::remove`]. Await it.
#[must_use = "an operation does nothing until awaited"]
pub struct Remove {
    common: Common,
    key: String,
}
common_options!(Remove);

impl IntoFuture for Remove {
    type Output = Result<(), Error>;
    type IntoFuture = BoxFuture<'static, Result<(), Error>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let Common { client, options } = self.common;
            match client
                .submit(Operation::Remove { key: self.key }, options)
                .await?
            {
                Reply::Removed => Ok(()),
                other => Err(unexpected("remove", &other)),
            }
        })
    }
}

/// The core answered with a reply of another operation's kind (it never
/// does; this keeps the mapping total without panicking).
fn unexpected(op: &str, reply: &Reply) -> Error {
    Error::Op(OpError::Protocol {
        message: format!("{op} answered with an unexpected reply: {reply:?}"),
    })
}
