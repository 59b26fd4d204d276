//! The [`Connection`] handle: listeners, signal and binary events, ping,
//! and the connection's state (JS `cachearoo.connection`).

use std::sync::Arc;

use cachearoo_core::{ListenerId, SendError};
use futures_lite::StreamExt;
use serde::Serialize;

use crate::client::Inner;
use crate::error::Error;
use crate::events::{
    BinaryListener, ChangeEvent, ConnectionEvent, ConnectionEvents, DisconnectReason, Listener,
};
use crate::queue::lag_queue;
use crate::shared::{Command, ListenerSink};

/// The connection of a [`Cachearoo`](crate::Cachearoo) client; a cheap,
/// clonable handle that keeps the client alive like the client handle does.
///
/// Callbacks (`add_listener_callback`, `on_connect`, `on_disconnect`,
/// `on_pong`) run on the client's driver task: keep them short and never
/// block in them (send to a channel or spawn for longer work). The stream
/// forms ([`Connection::add_listener`], [`Connection::events`]) run nothing
/// on the driver.
#[derive(Clone)]
pub struct Connection {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("connected", &self.is_connected())
            .finish()
    }
}

/// Sends `make(reply)` and waits for the one answer.
async fn ask<T>(
    inner: &Inner,
    make: impl FnOnce(async_channel::Sender<T>) -> Command,
) -> Option<T> {
    let (tx, rx) = async_channel::bounded(1);
    if !inner.send(make(tx)).await {
        return None;
    }
    rx.recv().await.ok()
}

fn closed() -> Error {
    Error::Send(SendError::Closed)
}

impl Connection {
    /// Whether the WebSocket is connected (greeted by the server).
    pub fn is_connected(&self) -> bool {
        self.inner.shared.is_connected()
    }

    /// The id of the server currently connected to.
    pub fn server_id(&self) -> Option<String> {
        self.inner.shared.server_id()
    }

    /// Waits until the client is connected and returns the server's id
    /// (at once when already connected). Fails only when the client is closed.
    pub async fn wait_connected(&self) -> Result<String, Error> {
        let mut events = self.events().await?;
        while let Some(event) = events.next().await {
            if let Ok(ConnectionEvent::Connected { server_id }) = event {
                return Ok(server_id);
            }
        }
        Err(closed())
    }

    /// Listens to changes of `key` in `bucket` (`"*"` matches any bucket or
    /// key; there are no partial wildcards). With `send_values` the events
    /// carry the written value. The listener survives reconnects (it is
    /// registered again after each one) and can be added before the client
    /// ever connects. Dropping the returned stream removes it.
    ///
    /// The server learns of listeners asynchronously (`register-events` has
    /// no answer): a change another client makes right after this returns
    /// may come before the registration and be missed. The server handles a
    /// connection's messages in order, so once any later operation of this
    /// client has been answered, the listener is in place.
    pub async fn add_listener(
        &self,
        bucket: impl Into<String>,
        key: impl Into<String>,
        send_values: bool,
    ) -> Result<Listener, Error> {
        let (tx, rx) = lag_queue(self.inner.listener_capacity);
        let id = ask(&self.inner, |reply| Command::AddListener {
            bucket: bucket.into(),
            key: key.into(),
            send_values,
            sink: ListenerSink::Changes(tx),
            reply,
        })
        .await
        .ok_or_else(closed)?;
        Ok(Listener::new(id, rx, self.inner.shared.clone()))
    }

    /// The callback form of [`Connection::add_listener`] (JS
    /// `addListener(bucket, key, sendValues, callback)`): `callback` runs on
    /// the driver task for every event until [`Connection::remove_listener`]
    /// is called with the returned id.
    pub async fn add_listener_callback<F>(
        &self,
        bucket: impl Into<String>,
        key: impl Into<String>,
        send_values: bool,
        callback: F,
    ) -> Result<ListenerId, Error>
    where
        F: FnMut(&ChangeEvent) + Send + 'static,
    {
        ask(&self.inner, |reply| Command::AddListener {
            bucket: bucket.into(),
            key: key.into(),
            send_values,
            sink: ListenerSink::Callback(Box::new(callback)),
            reply,
        })
        .await
        .ok_or_else(closed)
    }

    /// Removes a listener (a callback, or a stream, which then ends);
    /// `false` if there was none with this id.
    pub async fn remove_listener(&self, id: ListenerId) -> Result<bool, Error> {
        ask(&self.inner, |reply| Command::RemoveListener { id, reply })
            .await
            .ok_or_else(closed)
    }

    /// Receives the binary events sent to `key` in `bucket` (wildcards as
    /// for [`Connection::add_listener`]). Dropping the stream removes the
    /// listener.
    pub async fn add_binary_listener(
        &self,
        bucket: impl Into<String>,
        key: impl Into<String>,
    ) -> Result<BinaryListener, Error> {
        let (tx, rx) = lag_queue(self.inner.listener_capacity);
        let id = ask(&self.inner, |reply| Command::AddListener {
            bucket: bucket.into(),
            key: key.into(),
            send_values: false,
            sink: ListenerSink::Binary(tx),
            reply,
        })
        .await
        .ok_or_else(closed)?;
        Ok(BinaryListener::new(id, rx, self.inner.shared.clone()))
    }

    /// Sends a signal event with `value` to every other client listening on
    /// `bucket`/`key` (JS `signalEvent`). Nothing is stored and nothing
    /// answers. Fails with `SendError::NotConnected` while disconnected:
    /// signals have no REST form.
    pub async fn signal_event<T: Serialize + ?Sized>(
        &self,
        bucket: impl Into<String>,
        key: impl Into<String>,
        value: &T,
    ) -> Result<(), Error> {
        let value = serde_json::to_value(value).map_err(Error::Serialize)?;
        ask(&self.inner, |reply| Command::Signal {
            bucket: bucket.into(),
            key: key.into(),
            value: Some(value),
            reply,
        })
        .await
        .ok_or_else(closed)?
        .map_err(Error::from)
    }

    /// Sends a binary event (an application-defined `kind` byte and a
    /// payload) to every other client listening on `bucket`/`key`. Bucket,
    /// key and apiKey must each be at most 36 bytes.
    pub async fn send_binary(
        &self,
        kind: u8,
        bucket: impl Into<String>,
        key: impl Into<String>,
        payload: impl Into<Vec<u8>>,
    ) -> Result<(), Error> {
        ask(&self.inner, |reply| Command::Binary {
            kind,
            bucket: bucket.into(),
            key: key.into(),
            payload: payload.into(),
            reply,
        })
        .await
        .ok_or_else(closed)?
        .map_err(Error::from)
    }

    /// Sends an application ping now; the answer arrives as `on_pong` /
    /// [`ConnectionEvent::Pong`].
    pub async fn ping(&self) -> Result<(), Error> {
        ask(&self.inner, |reply| Command::Ping { reply })
            .await
            .ok_or_else(closed)?
            .map_err(Error::from)
    }

    /// Calls `callback` with the server id on every connection (JS
    /// `onConnect`), at once if the client is connected already.
    pub async fn on_connect<F>(&self, callback: F) -> Result<(), Error>
    where
        F: FnMut(&str) + Send + 'static,
    {
        self.command(Command::OnConnect(Box::new(callback))).await
    }

    /// Calls `callback` whenever a connection ends (JS `onDisconnect`).
    pub async fn on_disconnect<F>(&self, callback: F) -> Result<(), Error>
    where
        F: FnMut(DisconnectReason) + Send + 'static,
    {
        self.command(Command::OnDisconnect(Box::new(callback)))
            .await
    }

    /// Calls `callback` with the server's time on every pong (JS `onPong`).
    pub async fn on_pong<F>(&self, callback: F) -> Result<(), Error>
    where
        F: FnMut(&str) + Send + 'static,
    {
        self.command(Command::OnPong(Box::new(callback))).await
    }

    /// A stream of the connection's state changes, pongs and server
    /// errors: the stream form of `on_connect`, `on_disconnect`, `on_pong`.
    /// It starts with `Connected` when the client is connected already.
    pub async fn events(&self) -> Result<ConnectionEvents, Error> {
        let (tx, rx) = lag_queue(self.inner.listener_capacity);
        self.command(Command::Subscribe(tx)).await?;
        Ok(ConnectionEvents::new(rx))
    }

    async fn command(&self, command: Command) -> Result<(), Error> {
        if self.inner.send(command).await {
            Ok(())
        } else {
            Err(closed())
        }
    }
}
