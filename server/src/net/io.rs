//! hyper's I/O traits → futures-io, for the upgraded connection that
//! async-tungstenite takes over. (The other direction, futures-io → hyper,
//! is `smol_hyper::rt::FuturesIo`.)

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

/// Wraps a `hyper::rt::Read + Write` (e.g. `hyper::upgrade::Upgraded`) as a
/// `futures_io::AsyncRead + AsyncWrite`.
#[derive(Debug)]
pub(crate) struct HyperIo<T>(pub(crate) T);

impl<T: hyper::rt::Read + Unpin> futures_io::AsyncRead for HyperIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        // `buf` is initialised memory, so hyper's ReadBuf can borrow it
        // safely; what hyper filled is what we read.
        let mut rb = hyper::rt::ReadBuf::new(buf);
        ready!(Pin::new(&mut self.0).poll_read(cx, rb.unfilled()))?;
        Poll::Ready(Ok(rb.filled().len()))
    }
}

impl<T: hyper::rt::Write + Unpin> futures_io::AsyncWrite for HyperIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
