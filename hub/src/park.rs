//! Idle keep-alive connections without their HTTP buffers.
//!
//! hyper keeps a read and a write buffer of 8 KiB each for the whole life of a
//! connection, idle or not: most of what 10,000 idle participant connections would hold.
//! Here a connection that has answered every request and heard nothing from its client
//! for [`PARK_AFTER`] leaves hyper (its buffers are freed) and waits on the socket alone
//! (its TLS state stays); the client's next bytes start a new hyper connection on the same
//! socket. A client sees one ordinary keep-alive connection.
//!
//! A connection is parked only when its last answer has been flushed whole, nothing has
//! been read since, and no answer is still being produced, so no answer is ever cut. The
//! one exception is a client that pipelines and stops for [`PARK_AFTER`] in the middle of a
//! request whose first part the hub read before it had flushed the answer to the one
//! before: its connection is closed, as any server may close a keep-alive connection.
//!
//! A connection is closed `idle_timeout` after its last answer (or its start), parked or
//! not: bytes that carry no request (a TLS record sent a byte at a time, key updates) wake
//! a parked connection but do not move that deadline.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
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
    /// The connection's reader, waiting for the last busy answer to end (see `Busy`).
    waiting: Mutex<Option<Waker>>,
    wants_wake: AtomicBool,
}

impl Activity {
    /// Counts an answer as busy until the returned guard is dropped.
    pub fn enter(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    fn idle(&self) -> bool {
        self.busy.load(Ordering::Acquire) == 0
    }

    /// Wakes `waker` when the last busy answer ends; false if none is busy now.
    fn wake_when_idle(&self, waker: &Waker) -> bool {
        *self.waiting.lock().unwrap_or_else(PoisonError::into_inner) = Some(waker.clone());
        self.wants_wake.store(true, Ordering::Release);
        !self.idle()
    }

    /// The listener is shutting down: answers should say `Connection: close`.
    pub fn closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }
}

/// One answer in progress (see [`Activity::enter`]).
#[derive(Debug)]
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let a = &self.0;
        if a.busy.fetch_sub(1, Ordering::AcqRel) == 1 && a.wants_wake.swap(false, Ordering::AcqRel)
        {
            // hyper may not read again by itself: let the reader see the connection idle.
            let waker = a
                .waiting
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(w) = waker {
                w.wake();
            }
        }
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
    /// Nothing has been read since the last answer was flushed whole (true for a new
    /// connection: nothing has been read at all).
    answered: bool,
    /// Something was handed to the socket (or tried to be) since the last flush.
    wrote: bool,
    /// When the last answer was flushed whole, or the connection started.
    answered_at: Instant,
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
            answered_at: Instant::now(),
            restart: true,
            idle: None,
            parked: false,
            unread: Bytes::new(),
        }
    }

    /// Until the flush that follows a write, part of an answer may still be in hyper's
    /// buffer or the socket's: not idle.
    fn writing(&mut self) {
        self.wrote = true;
        self.answered = false;
    }

    /// Ready for hyper again, with the bytes it had read but not used. The idle clocks go on
    /// from the last answer: waking up is not an answer.
    fn resume(&mut self, unread: Bytes) {
        self.answered = unread.is_empty();
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
            Poll::Pending if this.answered && this.activity.idle() => this.poll_idle(cx),
            Poll::Pending if this.answered && this.activity.wake_when_idle(cx.waker()) => {
                Poll::Pending
            }
            // The last busy answer ended meanwhile.
            Poll::Pending if this.answered => this.poll_idle(cx),
            other => other,
        }
    }
}

impl<S: Socket> Parkable<S> {
    /// Idle: parks once idle for [`PARK_AFTER`], at once when shutting down.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.activity.closing() {
            self.parked = true;
            return Poll::Ready(Ok(()));
        }
        let deadline = Instant::now() + PARK_AFTER;
        let idle = self
            .idle
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if std::mem::take(&mut self.restart) {
            idle.as_mut().reset(deadline);
        }
        std::task::ready!(idle.as_mut().poll(cx));
        self.parked = true;
        self.idle = None;
        Poll::Ready(Ok(()))
    }
}

impl<S: Socket> AsyncWrite for Parkable<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.writing();
        Pin::new(&mut this.socket).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.writing();
        Pin::new(&mut this.socket).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.socket.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.socket).poll_flush(cx);
        // hyper flushes the socket only once its own buffer is empty.
        if matches!(polled, Poll::Ready(Ok(()))) && std::mem::take(&mut this.wrote) {
            this.answered = true;
            this.answered_at = Instant::now();
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
    async move {
        loop {
            // hyper's connection (its buffers and state, several KiB) lives on the heap only
            // while it serves, so that a parked connection's task is small.
            let served = Box::pin(async {
                let conn = builder.serve_connection(TokioIo::new(io), service);
                let mut conn = std::pin::pin!(conn.without_shutdown());
                if activity.closing() {
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
            if !io.parked || activity.closing() {
                // The client closed, asked to close, or the listener is shutting down.
                let _ = tokio::time::timeout(PARK_AFTER, io.socket.shutdown()).await;
                return;
            }
            if unread.is_empty() {
                let _gauge = ParkedGauge::new(tracked);
                let deadline = io.answered_at + idle_timeout;
                tokio::select! {
                    ready = tokio::time::timeout_at(deadline, io.socket.tcp().readable()) => {
                        if !matches!(ready, Ok(Ok(()))) {
                            return;
                        }
                    }
                    _ = shutdown.changed() => return,
                }
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
    use crate::metrics::Metrics;

    /// A body that sends `first`, waits `wait`, then sends `then`: a connection parked while
    /// it waits, or while `then` is still on its way, would cut it.
    struct Slow {
        first: Option<Bytes>,
        wait: Pin<Box<Sleep>>,
        then: Option<Bytes>,
    }

    fn slow(first: &'static [u8], wait: Duration, then: Bytes) -> Body {
        Body::new(Slow {
            first: Some(Bytes::from_static(first)),
            wait: Box::pin(tokio::time::sleep(wait)),
            then: Some(then),
        })
    }

    impl hyper::body::Body for Slow {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            if let Some(first) = self.first.take() {
                return Poll::Ready(Some(Ok(Frame::data(first))));
            }
            std::task::ready!(self.wait.as_mut().poll(cx));
            Poll::Ready(self.then.take().map(|b| Ok(Frame::data(b))))
        }

        // Ended with its last part, so that hyper drops the body while it still sends it.
        fn is_end_stream(&self) -> bool {
            self.first.is_none() && self.then.is_none()
        }
    }

    /// A socket that drops every NUL byte it reads, as TLS drops records that carry no
    /// application data: bytes arrive, nothing is read.
    struct Swallow(TcpStream);

    impl AsyncRead for Swallow {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            loop {
                let mut bytes = [0u8; 512];
                let mut got = ReadBuf::new(&mut bytes);
                std::task::ready!(Pin::new(&mut self.0).poll_read(cx, &mut got))?;
                if got.filled().is_empty() {
                    return Poll::Ready(Ok(()));
                }
                let kept: Vec<u8> = got.filled().iter().copied().filter(|b| *b != 0).collect();
                if !kept.is_empty() {
                    buf.put_slice(&kept);
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }

    impl AsyncWrite for Swallow {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.0).poll_write(cx, buf)
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_flush(cx)
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_shutdown(cx)
        }
    }

    impl Socket for Swallow {
        fn tcp(&self) -> &TcpStream {
            &self.0
        }
    }

    struct Server {
        addr: std::net::SocketAddr,
        stop: watch::Sender<bool>,
        tracked: Arc<Tracked>,
    }

    impl Server {
        /// Connections parked now.
        fn parked(&self) -> bool {
            let mut out = String::new();
            self.tracked.metrics.render(&mut out);
            out.contains("renkei_connections_parked{listener=\"test\"} 1")
        }
    }

    /// A server on loopback whose every answer is `body()`, closing connections `idle`
    /// after their last answer, reading through `wrap`.
    async fn server<S: Socket>(
        body: fn() -> Body,
        idle: Duration,
        wrap: fn(TcpStream) -> S,
    ) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = watch::channel(false);
        let tracked = Arc::new(Tracked {
            listener: "test",
            metrics: Arc::new(Metrics::default()),
        });
        let counted = tracked.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let service = move |activity: Arc<Activity>| {
                    hyper::service::service_fn(move |_req| {
                        let busy = activity.enter();
                        async move {
                            Ok::<_, Infallible>(hyper::Response::new(Answer::new(body(), busy)))
                        }
                    })
                };
                let (counted, stopped) = (counted.clone(), stopped.clone());
                tokio::spawn(async move {
                    let builder = http1::Builder::new();
                    serve(wrap(tcp), builder, service, idle, Some(&counted), stopped).await;
                });
            }
        });
        Server {
            addr,
            stop,
            tracked,
        }
    }

    /// Reads until the bytes end with `end`, the connection ends or `within` passes.
    async fn read_until(tcp: &mut TcpStream, end: &[u8], within: Duration) -> Vec<u8> {
        let mut got = Vec::new();
        let _ = tokio::time::timeout(within, async {
            let mut buf = vec![0u8; 64 * 1024];
            while !got.ends_with(end) {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(buf.get(..n).unwrap()),
                }
            }
        })
        .await;
        got
    }

    async fn closed(tcp: &mut TcpStream, within: Duration) -> bool {
        let mut buf = [0u8; 64];
        matches!(
            tokio::time::timeout(within, tcp.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";
    const LAST_CHUNK: &[u8] = b"\r\n0\r\n\r\n";

    #[tokio::test]
    async fn an_answer_still_being_produced_is_not_cut_by_parking() {
        let body = || {
            slow(
                b"first,",
                PARK_AFTER * 3 / 2,
                Bytes::from_static(b"second."),
            )
        };
        let s = server(body, Duration::from_secs(10), |t| t).await;
        let mut tcp = TcpStream::connect(s.addr).await.unwrap();
        tcp.write_all(GET).await.unwrap();
        let got = read_until(&mut tcp, LAST_CHUNK, Duration::from_secs(5)).await;
        let got = String::from_utf8_lossy(&got);
        assert!(
            got.contains("first,") && got.contains("second."),
            "cut: {got:?}"
        );
        // And the connection is still the client's.
        tcp.write_all(GET).await.unwrap();
        let got = read_until(&mut tcp, b"first,\r\n", Duration::from_secs(2)).await;
        assert!(
            got.starts_with(b"HTTP/1.1 200 OK"),
            "closed after a slow answer"
        );
    }

    #[tokio::test]
    async fn an_answer_still_being_sent_to_a_slow_reader_is_not_cut() {
        // Its last 32 MiB wait in hyper's and the kernel's buffers while the client reads
        // nothing for longer than PARK_AFTER, its body already gone.
        const BIG: usize = 32 << 20;
        let body = || slow(b"first,", Duration::from_millis(50), vec![b'x'; BIG].into());
        let s = server(body, Duration::from_secs(10), |t| t).await;
        let mut tcp = TcpStream::connect(s.addr).await.unwrap();
        tcp.write_all(GET).await.unwrap();
        read_until(&mut tcp, b"first,\r\n", Duration::from_secs(2)).await;
        tokio::time::sleep(PARK_AFTER * 5 / 2).await;
        let got = read_until(&mut tcp, LAST_CHUNK, Duration::from_secs(20)).await;
        let xs = got.iter().filter(|b| **b == b'x').count();
        assert_eq!(xs, BIG, "the answer's tail was cut");
        assert!(got.ends_with(LAST_CHUNK));
    }

    #[tokio::test]
    async fn pipelined_requests_are_all_answered_and_the_connection_parks() {
        let s = server(|| Body::from("ok"), Duration::from_secs(10), |t| t).await;
        let mut tcp = TcpStream::connect(s.addr).await.unwrap();
        let two = b"GET /1 HTTP/1.1\r\nhost: x\r\n\r\nGET /2 HTTP/1.1\r\nhost: x\r\n\r\n";
        tcp.write_all(two).await.unwrap();
        let mut got = Vec::new();
        while got.windows(2).filter(|w| w == b"ok").count() < 2 {
            let more = read_until(&mut tcp, b"ok", Duration::from_secs(5)).await;
            assert!(!more.is_empty(), "{:?}", String::from_utf8_lossy(&got));
            got.extend(more);
        }
        assert!(!s.parked());
        tokio::time::sleep(PARK_AFTER * 2).await;
        assert!(s.parked(), "an idle connection was not parked");
        tcp.write_all(GET).await.unwrap();
        let got = read_until(&mut tcp, b"ok", Duration::from_secs(5)).await;
        assert!(got.starts_with(b"HTTP/1.1 200 OK"));
        assert!(!s.parked());
    }

    #[tokio::test]
    async fn bytes_without_a_request_do_not_keep_a_connection_open() {
        // Closed 2 s after its answer although a NUL byte (read as nothing) comes every
        // 400 ms and wakes it each time.
        let s = server(|| Body::from("ok"), Duration::from_secs(2), Swallow).await;
        let mut tcp = TcpStream::connect(s.addr).await.unwrap();
        tcp.write_all(GET).await.unwrap();
        read_until(&mut tcp, b"ok", Duration::from_secs(2)).await;
        let answered = tokio::time::Instant::now();
        let mut open_for = Duration::ZERO;
        while answered.elapsed() < Duration::from_secs(6) {
            if tcp.write_all(&[0]).await.is_err()
                || closed(&mut tcp, Duration::from_millis(400)).await
            {
                open_for = answered.elapsed();
                break;
            }
        }
        assert!(
            open_for > Duration::ZERO && open_for < Duration::from_millis(3500),
            "open {:?} after its answer",
            answered.elapsed()
        );
    }

    #[tokio::test]
    async fn shutdown_closes_an_idle_connection_and_lets_a_busy_one_finish() {
        let body = || {
            slow(
                b"first,",
                Duration::from_millis(500),
                Bytes::from_static(b"second."),
            )
        };
        let s = server(body, Duration::from_secs(10), |t| t).await;
        let mut idle = TcpStream::connect(s.addr).await.unwrap();
        let mut busy = TcpStream::connect(s.addr).await.unwrap();
        busy.write_all(GET).await.unwrap();
        read_until(&mut busy, b"first,\r\n", Duration::from_secs(2)).await;
        s.stop.send(true).unwrap();
        // Well before PARK_AFTER: closed by the shutdown, not by parking.
        let quick = PARK_AFTER / 3;
        assert!(
            closed(&mut idle, quick).await,
            "the idle connection stayed open"
        );
        let rest = read_until(&mut busy, LAST_CHUNK, Duration::from_secs(2)).await;
        assert!(
            rest.ends_with(b"second.\r\n0\r\n\r\n"),
            "the busy answer was cut"
        );
        assert!(
            closed(&mut busy, quick).await,
            "the busy connection stayed open"
        );
    }
}
