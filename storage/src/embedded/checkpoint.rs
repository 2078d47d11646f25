//! Checkpoints on a thread of their own.
//!
//! A checkpoint copies the pages of committed transactions from the WAL
//! into the database file and syncs it. Run by the writer after a commit
//! (SQLite's auto-checkpoint), it holds up every write waiting behind it;
//! here a second connection does it while the writer goes on. The writer
//! reports each commit; after enough written rows or time, this thread runs
//! a PASSIVE checkpoint (it never waits for the writer or for readers).
//!
//! Durability does not depend on checkpoints: a commit is in the WAL
//! before it is acknowledged. The writer keeps SQLite's auto-checkpoint
//! at a larger size as a backstop: a passive checkpoint running while the
//! writer appends cannot always let the WAL start over, and if this thread
//! falls behind the writer still bounds the WAL.

use super::sql_error;
use crate::{Result, StoreError};
use rusqlite::Connection;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

/// Rows committed since the last checkpoint that call for the next one.
const ROWS: usize = 20_000;
/// Time after a commit that calls for a checkpoint even with fewer rows.
const IDLE: Duration = Duration::from_millis(500);

/// The handle the writer reports commits to; dropping it stops the thread.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    tx: Option<mpsc::Sender<usize>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Checkpointer {
    pub(crate) fn start(conn: Connection) -> Result<Checkpointer> {
        let (tx, rx) = mpsc::channel::<usize>();
        let thread = thread::Builder::new()
            .name("storage-checkpoint".into())
            .spawn(move || run(&conn, &rx))
            .map_err(|e| {
                StoreError::unavailable("cannot start the checkpoint thread").with_source(e)
            })?;
        Ok(Checkpointer {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// A transaction of about `rows` rows committed.
    pub(crate) fn committed(&self, rows: usize) {
        if let Some(tx) = &self.tx {
            // A stopped thread leaves checkpoints to the backstop.
            let _ = tx.send(rows);
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(conn: &Connection, rx: &mpsc::Receiver<usize>) {
    let mut pending = 0usize;
    let mut since = Instant::now();
    loop {
        let got = if pending == 0 {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            rx.recv_timeout(IDLE.saturating_sub(since.elapsed()))
        };
        match got {
            Ok(rows) => {
                if pending == 0 {
                    since = Instant::now();
                }
                pending = pending.saturating_add(rows.max(1));
                if pending < ROWS && since.elapsed() < IDLE {
                    continue;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if let Err(e) = checkpoint(conn) {
            tracing::warn!(error = %e, "storage checkpoint failed");
        }
        pending = 0;
    }
}

fn checkpoint(conn: &Connection) -> Result<()> {
    // (busy, frames in the WAL, frames checkpointed); busy only means
    // another connection was checkpointing.
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        .map_err(sql_error)
}
