//! The node's log on stdout, written by a thread of its own.
//!
//! A thread that logs (a Call actor, the SIP core) formats its line and
//! queues it; the log thread writes what has queued in one go, at most
//! every few milliseconds. So a call never waits on the terminal or on
//! whatever reads the pipe, and under load one write carries dozens of
//! lines instead of one each. If the reader of stdout stalls long enough
//! for the queue to fill, lines are dropped rather than holding up calls,
//! and the log says how many once it moves again.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tracing_subscriber::fmt::MakeWriter;

/// Lines queued before new ones are dropped: tens of seconds of a busy
/// node's log.
const QUEUE: usize = 65_536;
/// How long the log thread lets lines gather after the first one.
const GATHER: Duration = Duration::from_millis(5);

enum Msg {
    Line(Vec<u8>),
    /// Write out everything queued before this, then answer.
    Flush(SyncSender<()>),
}

/// Where the subscriber formats its lines: each goes to the log thread.
#[derive(Clone)]
pub struct Lines {
    tx: SyncSender<Msg>,
    dropped: Arc<AtomicU64>,
}

/// One line being formatted; queued when dropped.
pub struct Line<'a> {
    buf: Vec<u8>,
    to: &'a Lines,
}

impl Write for Line<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Line<'_> {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        match self
            .to
            .tx
            .try_send(Msg::Line(std::mem::take(&mut self.buf)))
        {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.to.dropped.fetch_add(1, Ordering::Relaxed);
            }
            // The log thread is gone (the process is ending): written
            // here instead.
            Err(TrySendError::Disconnected(Msg::Line(l))) => {
                let _ = io::stdout().write_all(&l);
            }
            Err(TrySendError::Disconnected(Msg::Flush(_))) => {}
        }
    }
}

impl<'a> MakeWriter<'a> for Lines {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line {
            buf: Vec::with_capacity(256),
            to: self,
        }
    }
}

/// Flushes the log when dropped (at the end of `main`).
pub struct Guard {
    tx: SyncSender<Msg>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let (ack, done) = mpsc::sync_channel(1);
        if self.tx.send(Msg::Flush(ack)).is_ok() {
            // A stdout that never drains must not keep the process up.
            let _ = done.recv_timeout(Duration::from_secs(2));
        }
        drop(self.thread.take());
    }
}

/// Starts the log thread writing to `out`.
pub fn start<W: Write + Send + 'static>(out: W) -> io::Result<(Lines, Guard)> {
    let (tx, rx) = mpsc::sync_channel(QUEUE);
    let dropped = Arc::new(AtomicU64::new(0));
    let counter = dropped.clone();
    let thread = std::thread::Builder::new()
        .name("log".into())
        .spawn(move || write_lines(rx, out, &counter))?;
    Ok((
        Lines {
            tx: tx.clone(),
            dropped,
        },
        Guard {
            tx,
            thread: Some(thread),
        },
    ))
}

fn write_lines<W: Write>(rx: Receiver<Msg>, out: W, dropped: &AtomicU64) {
    let mut out = io::BufWriter::with_capacity(64 * 1024, out);
    while let Ok(first) = rx.recv() {
        let mut acks = Vec::new();
        let mut take = |m: Msg, out: &mut io::BufWriter<W>| match m {
            Msg::Line(l) => {
                let _ = out.write_all(&l);
            }
            Msg::Flush(ack) => acks.push(ack),
        };
        let flushing = matches!(first, Msg::Flush(_));
        take(first, &mut out);
        if !flushing {
            std::thread::sleep(GATHER);
        }
        while let Ok(m) = rx.try_recv() {
            take(m, &mut out);
        }
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            let _ = writeln!(
                out,
                "{lost} log lines were dropped: stdout was not read fast enough"
            );
        }
        let _ = out.flush();
        for a in acks {
            let _ = a.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A stdout that keeps what it was given, and counts the writes.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
            s.0.extend_from_slice(b);
            s.1 += 1;
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn line(lines: &Lines, text: &str) {
        let mut l = lines.make_writer();
        let _ = l.write_all(text.as_bytes());
    }

    #[test]
    fn every_line_is_written_in_order_and_in_few_writes() {
        let sink = Sink::default();
        let (lines, guard) = start(sink.clone()).unwrap_or_else(|e| panic!("{e}"));
        let sent: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        for l in sent.lines() {
            line(&lines, &format!("{l}\n"));
        }
        drop(guard);
        let s = sink.0.lock().unwrap_or_else(|p| p.into_inner());
        assert_eq!(String::from_utf8_lossy(&s.0), sent);
        assert!(s.1 < 100, "{} writes for 1000 lines", s.1);
    }

    #[test]
    fn a_full_queue_drops_lines_and_says_how_many() {
        /// A stdout nobody reads until told to; it says when a write
        /// has begun.
        struct Stuck(mpsc::Sender<()>, mpsc::Receiver<()>, Sink);
        impl Write for Stuck {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                let _ = self.0.send(());
                let _ = self.1.recv();
                self.2.write(b)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let (go, wait) = mpsc::channel();
        let (began, writing) = mpsc::channel();
        let (lines, guard) =
            start(Stuck(began, wait, sink.clone())).unwrap_or_else(|e| panic!("{e}"));
        // The first line takes the thread into the stuck write; then the
        // queue fills.
        line(&lines, "first\n");
        writing
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{e}"));
        for _ in 0..QUEUE + 10 {
            line(&lines, "x\n");
        }
        for _ in 0..10_000 {
            let _ = go.send(());
        }
        drop(guard);
        let s = sink.0.lock().unwrap_or_else(|p| p.into_inner());
        let text = String::from_utf8_lossy(&s.0);
        assert!(
            text.starts_with("first\n"),
            "{}",
            &text[..20.min(text.len())]
        );
        assert_eq!(text.matches("x\n").count(), QUEUE);
        assert!(
            text.contains("10 log lines were dropped"),
            "{}",
            &text[text.len().saturating_sub(200)..]
        );
    }
}
