//! Idle keep-alive connections without their HTTP buffers.
//!
//! hyper keeps a read and a write buffer of 8 KiB each for the whole life of a
//! connection, idle or not: most of what 10,000 idle participant connections would hold.
//! Here a connection that has answered every request and heard nothing from its client
//! for [`PARK_AFTER`] leaves hyper (its buffers are freed) and waits on the socket alone
//! (its TLS state stays); the client's next bytes start a new hyper connection on the same
//! socket. A client sees one ordinary keep-alive connection.
//!
//! A connection is parked only when nothing has been read since its last answer was
//! flushed and no answer is still being produced or sent, so no request is ever cut. The
//! one exception is a client that pipelines, stops in the middle of its second request
//! for [`PARK_AFTER`] and sent that request's first part in the same read as the first
//! request: its connection is closed, as any server may close a keep-alive connection.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use hyper::body::{Bytes, Frame, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

use crate::metrics::Tracked;

/// How long a connection waits, idle, before it gives its HTTP buffers back.
pub const PARK_AFTER: Duration = Duration::from_secs(1);

/// A socket a parked connection can wait on.
pub trait Socket: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// The TCP stream underneath.
    fn tcp(&self) -> &TcpStream;
}

impl Socket for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

/// Boxed, so that the futures that move a TLS stream around (1.2 KiB of rustls state) do
/// not each keep room for it.
impl Socket for Box<tokio_rustls::server::TlsStream<TcpStream>> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

/// What the requests of one connection tell its reader.
#[derive(Debug, Default)]
pub struct Activity {
    /// Answers still being produced or sent.
    busy: AtomicUsize,
    /// The listener is shutting down: close once idle.
    closing: AtomicBool,
}

impl Activity {
    /// Counts an answer as busy until the returned guard is dropped.
    pub fn enter(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::Relaxed);
        Busy(self.clone())
    }

    fn idle(&self) -> bool {
        self.busy.load(Ordering::Relaxed) == 0
    }
}

/// One answer in progress (see [`Activity::enter`]).
#[derive(Debug)]
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its answer counted as busy until hyper has sent it all
/// (hyper drops the body then) or the connection ends.
#[derive(Debug)]
pub struct Answer {
    body: Body,
    _busy: Busy,
}

impl Answer {
    /// `body`, counted as busy by `busy`.
    pub fn new(body: Body, busy: Busy) -> Answer {
        Answer { body, _busy: busy }
    }
}

impl hyper::body::Body for Answer {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The socket as hyper sees it: reads end (a clean end of stream) once the connection
/// has been idle for [`PARK_AFTER`], or at once when idle during shutdown.
struct Parkable<S> {
    socket: S,
    activity: Arc<Activity>,
    /// Nothing has been read since the last answer was flushed (true for a new
    /// connection: nothing has been read at all).
    answered: bool,
    /// Something was written since the last flush.
    wrote: bool,
    /// The idle clock must start again at the next idle read.
    restart: bool,
    idle: Option<Pin<Box<Sleep>>>,
    /// The end of stream hyper saw was ours, not the client's.
    parked: bool,
    /// Bytes hyper had read but not used when it let go (none in practice).
    unread: Bytes,
}

impl<S: Socket> Parkable<S> {
    fn new(socket: S, activity: Arc<Activity>) -> Self {
        Parkable {
            socket,
            activity,
            answered: true,
            wrote: false,
            restart: true,
            idle: None,
            parked: false,
            unread: Bytes::new(),
        }
    }

    /// Ready for hyper again, with the bytes it had read but not used.
    fn resume(&mut self, unread: Bytes) {
        self.answered = unread.is_empty();
        self.wrote = false;
        self.restart = true;
        self.parked = false;
        self.unread = unread;
    }
}

impl<S: Socket> AsyncRead for Parkable<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.unread.is_empty() {
            let n = this.unread.len().min(buf.remaining());
            buf.put_slice(&this.unread.split_to(n));
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.socket).poll_read(cx, buf);
        match polled {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                this.answered = false;
                polled
            }
            Poll::Pending if this.answered && this.activity.idle() => {
                if this.activity.closing.load(Ordering::Relaxed) {
                    this.parked = true;
                    return Poll::Ready(Ok(()));
                }
                let deadline = Instant::now() + PARK_AFTER;
                let idle = this
                    .idle
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if std::mem::take(&mut this.restart) {
                    idle.as_mut().reset(deadline);
                }
                match idle.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.parked = true;
                        this.idle = None;
                        Poll::Ready(Ok(()))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
            other => other,
        }
    }
}

impl<S: Socket> AsyncWrite for Parkable<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.socket).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.wrote = true;
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.socket).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.wrote = true;
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.socket.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.socket).poll_flush(cx);
        if matches!(polled, Poll::Ready(Ok(()))) && std::mem::take(&mut this.wrote) {
            this.answered = true;
            this.restart = true;
        }
        polled
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().socket).poll_shutdown(cx)
    }
}

/// Counts a connection as parked (`renkei_connections_parked`) while it lives.
struct ParkedGauge<'a>(Option<&'a Tracked>);

impl<'a> ParkedGauge<'a> {
    fn new(tracked: Option<&'a Tracked>) -> Self {
        if let Some(t) = tracked {
            t.metrics.parked(t.listener, true);
        }
        ParkedGauge(tracked)
    }
}

impl Drop for ParkedGauge<'_> {
    fn drop(&mut self) {
        if let Some(t) = self.0 {
            t.metrics.parked(t.listener, false);
        }
    }
}

/// Serves one connection until it ends: hyper while requests come, parked on the socket
/// while they do not (counted in `tracked`'s metrics). A parked connection that stays
/// silent for `idle_timeout` is closed; at shutdown an idle connection is closed and a
/// busy one once it has answered.
pub fn serve<'a, S, F>(
    socket: S,
    builder: http1::Builder,
    service: impl FnOnce(Arc<Activity>) -> F,
    idle_timeout: Duration,
    tracked: Option<&'a Tracked>,
    mut shutdown: watch::Receiver<bool>,
) -> impl Future<Output = ()> + 'a
where
    S: Socket,
    F: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = hyper::Response<Answer>,
            Error = std::convert::Infallible,
        >,
    F: 'a,
    F::Future: Send + 'static,
{
    // Built here, not in the future, so that the future holds the socket once.
    let activity = Arc::new(Activity::default());
    let mut service = service(activity.clone());
    let mut io = Parkable::new(socket, activity.clone());
    let parked_for = idle_timeout.saturating_sub(PARK_AFTER);
    async move {
        loop {
            // hyper's connection (its buffers and state, several KiB) lives on the heap only
            // while it serves, so that a parked connection's task is small.
            let served = Box::pin(async {
                let conn = builder.serve_connection(TokioIo::new(io), service);
                let mut conn = std::pin::pin!(conn.without_shutdown());
                if activity.closing.load(Ordering::Relaxed) {
                    return conn.await;
                }
                tokio::select! {
                    served = &mut conn => served,
                    _ = shutdown.changed() => {
                        activity.closing.store(true, Ordering::Relaxed);
                        conn.await
                    }
                }
            })
            .await;
            // In a block of its own, so that nothing of `parts` is kept while parked.
            let unread = {
                let Ok(parts) = served else { return };
                io = parts.io.into_inner();
                service = parts.service;
                // Even empty, hyper's leftover shares its 8 KiB read buffer: keep a copy.
                Bytes::copy_from_slice(&parts.read_buf)
            };
            if !io.parked || activity.closing.load(Ordering::Relaxed) {
                // The client closed, asked to close, or the listener is shutting down.
                let _ = tokio::time::timeout(PARK_AFTER, io.socket.shutdown()).await;
                return;
            }
            let _gauge = ParkedGauge::new(tracked);
            tokio::select! {
                ready = tokio::time::timeout(parked_for, io.socket.tcp().readable()) => {
                    if !matches!(ready, Ok(Ok(()))) {
                        return;
                    }
                }
                _ = shutdown.changed() => return,
            }
            io.resume(unread);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;

    /// A body that sends its first part at once and its second after `PARK_AFTER` and a
    /// half: a connection parked while it waits would cut it.
    struct Slow {
        sent: u8,
        wait: Pin<Box<Sleep>>,
    }

    impl hyper::body::Body for Slow {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            match self.sent {
                0 => {
                    self.sent = 1;
                    Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"first,")))))
                }
                1 => {
                    std::task::ready!(self.wait.as_mut().poll(cx));
                    self.sent = 2;
                    Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"second.")))))
                }
                _ => Poll::Ready(None),
            }
        }
    }

    /// A server on loopback whose every answer is `body()`; returns its address.
    async fn server(body: fn() -> Body) -> (std::net::SocketAddr, watch::Sender<bool>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let service = |activity: Arc<Activity>| {
                    hyper::service::service_fn(move |_req| {
                        let busy = activity.enter();
                        async move {
                            Ok::<_, Infallible>(hyper::Response::new(Answer::new(body(), busy)))
                        }
                    })
                };
                let builder = http1::Builder::new();
                let idle = Duration::from_secs(10);
                tokio::spawn(serve(tcp, builder, service, idle, None, stopped.clone()));
            }
        });
        (addr, stop)
    }

    async fn read_until(tcp: &mut TcpStream, want: &str, within: Duration) -> String {
        let mut got = Vec::new();
        let _ = tokio::time::timeout(within, async {
            let mut buf = [0u8; 1024];
            while !String::from_utf8_lossy(&got).contains(want) {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(buf.get(..n).unwrap()),
                }
            }
        })
        .await;
        String::from_utf8_lossy(&got).into_owned()
    }

    #[tokio::test]
    async fn an_answer_still_being_sent_is_not_cut_by_parking() {
        let slow = || {
            Body::new(Slow {
                sent: 0,
                wait: Box::pin(tokio::time::sleep(PARK_AFTER + PARK_AFTER / 2)),
            })
        };
        let (addr, _stop) = server(slow).await;
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let got = read_until(&mut tcp, "0\r\n\r\n", Duration::from_secs(5)).await;
        assert!(
            got.contains("first,") && got.ends_with("second.\r\n0\r\n\r\n"),
            "the answer was cut: {got:?}"
        );
        // And the connection is still the client's.
        tcp.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let got = read_until(&mut tcp, "first,", Duration::from_secs(2)).await;
        assert!(
            got.starts_with("HTTP/1.1 200 OK"),
            "closed after a slow answer: {got:?}"
        );
    }

    #[tokio::test]
    async fn pipelined_requests_are_all_answered_across_a_park() {
        let (addr, _stop) = server(|| Body::from("ok")).await;
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let two = b"GET /1 HTTP/1.1\r\nhost: x\r\n\r\nGET /2 HTTP/1.1\r\nhost: x\r\n\r\n";
        tcp.write_all(two).await.unwrap();
        let got = read_until(&mut tcp, "okHTTP/1.1 200 OK", Duration::from_secs(5)).await;
        assert_eq!(got.matches("HTTP/1.1 200 OK").count(), 2, "{got:?}");
        // Parked now; the next request starts hyper again on the same socket.
        tokio::time::sleep(PARK_AFTER * 2).await;
        tcp.write_all(b"GET /3 HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let got = read_until(&mut tcp, "ok", Duration::from_secs(5)).await;
        assert!(got.starts_with("HTTP/1.1 200 OK"), "{got:?}");
    }

    #[tokio::test]
    async fn shutdown_closes_an_idle_connection_and_lets_a_busy_one_finish() {
        let slow = || {
            Body::new(Slow {
                sent: 0,
                wait: Box::pin(tokio::time::sleep(Duration::from_millis(500))),
            })
        };
        let (addr, stop) = server(slow).await;
        let mut idle = TcpStream::connect(addr).await.unwrap();
        let mut busy = TcpStream::connect(addr).await.unwrap();
        busy.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        assert!(
            read_until(&mut busy, "first,", Duration::from_secs(2))
                .await
                .contains("first,")
        );
        stop.send(true).unwrap();
        let mut buf = [0u8; 64];
        let closed = tokio::time::timeout(Duration::from_secs(2), idle.read(&mut buf)).await;
        assert!(
            matches!(closed, Ok(Ok(0))),
            "the idle connection stayed open: {closed:?}"
        );
        let rest = read_until(&mut busy, "second.", Duration::from_secs(2)).await;
        assert!(
            rest.contains("second."),
            "the busy answer was cut: {rest:?}"
        );
        let closed = tokio::time::timeout(Duration::from_secs(2), busy.read(&mut buf)).await;
        assert!(
            matches!(closed, Ok(Ok(0))),
            "the busy connection stayed open: {closed:?}"
        );
    }
}
