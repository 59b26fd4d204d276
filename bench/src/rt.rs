//! The two runtimes under test, behind one small enum so every figure is
//! written once and run on both.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use cachearoo::{BoxFuture, BoxedIo, Cachearoo, Options};

/// A runtime the client can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rt {
    /// smol (global executor; `SMOL_THREADS`, default 1 thread).
    Smol,
    /// async-std (its own thread pool, one thread per core).
    AsyncStd,
}

impl Rt {
    /// Both, in the order they are reported.
    pub const ALL: [Rt; 2] = [Rt::Smol, Rt::AsyncStd];

    /// Name used in the output.
    pub fn name(self) -> &'static str {
        match self {
            Rt::Smol => "smol",
            Rt::AsyncStd => "async-std",
        }
    }

    /// Runs `future` to completion on the calling thread.
    pub fn block_on<F: Future>(self, future: F) -> F::Output {
        match self {
            Rt::Smol => smol::block_on(future),
            Rt::AsyncStd => async_std::task::block_on(future),
        }
    }

    /// Runs `future` as a task of this runtime; the returned future is its
    /// result.
    pub fn spawn<T, F>(self, future: F) -> BoxFuture<'static, T>
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        match self {
            Rt::Smol => Box::pin(smol::spawn(future)),
            Rt::AsyncStd => Box::pin(async_std::task::spawn(future)),
        }
    }

    /// Sleeps for `duration` on this runtime's timer.
    pub fn sleep(self, duration: Duration) -> BoxFuture<'static, ()> {
        match self {
            Rt::Smol => Box::pin(async move {
                smol::Timer::after(duration).await;
            }),
            Rt::AsyncStd => Box::pin(async_std::task::sleep(duration)),
        }
    }

    /// Dials `addr` with this runtime's TCP stream, Nagle off (as the
    /// client's runtimes do), type-erased like the client's.
    pub async fn tcp(self, addr: SocketAddr) -> io::Result<BoxedIo> {
        match self {
            Rt::Smol => {
                let s = smol::net::TcpStream::connect(addr).await?;
                s.set_nodelay(true)?;
                Ok(Box::new(s))
            }
            Rt::AsyncStd => {
                let s = async_std::net::TcpStream::connect(addr).await?;
                s.set_nodelay(true)?;
                Ok(Box::new(s))
            }
        }
    }

    /// A client of the library on this runtime.
    pub fn client(self, options: Options) -> Cachearoo {
        match self {
            Rt::Smol => cachearoo_smol::connect(options),
            Rt::AsyncStd => cachearoo_async_std::connect(options),
        }
    }
}
