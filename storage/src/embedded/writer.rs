//! The one writer thread of an embedded store.
//!
//! Callers hand it jobs through a channel. It takes every job waiting (up
//! to a batch limit), runs them in one `BEGIN IMMEDIATE` transaction, each
//! in its own savepoint so one refused job (a conflict) leaves the others
//! in, commits, and only then answers each caller. An answer therefore
//! means "committed": with WAL that survives the process being killed.

use super::checkpoint::Checkpointer;
use super::sql_error;
use crate::{Result, StoreError};
use rusqlite::Connection;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::thread;
use tokio::sync::oneshot;

/// One unit of work for the writer.
pub(crate) trait Job: Send {
    /// Rows it writes, roughly: batches are cut by this.
    fn weight(&self) -> usize;
    /// Runs inside the batch's transaction, in a savepoint.
    fn run(&mut self, conn: &Connection);
    /// Answers the caller once the batch committed (or failed).
    fn finish(self: Box<Self>, committed: std::result::Result<(), &StoreError>);
}

struct Typed<T, F> {
    work: Option<F>,
    weight: usize,
    out: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, F> Job for Typed<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T> + Send + 'static,
{
    fn weight(&self) -> usize {
        self.weight
    }

    fn run(&mut self, conn: &Connection) {
        if let Some(work) = self.work.take() {
            self.out = Some(in_savepoint(conn, work));
        }
    }

    fn finish(self: Box<Self>, committed: std::result::Result<(), &StoreError>) {
        let answer = match (self.out, committed) {
            // The job's own refusal stands: nothing of it was written.
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(v)), Ok(())) => Ok(v),
            (Some(Ok(_)) | None, Err(e)) => Err(StoreError::new(
                e.kind(),
                format!("the write was not committed: {}", e.message()),
            )),
            (None, Ok(())) => Err(StoreError::unavailable("the writer skipped the job")),
        };
        // The caller may have stopped waiting; the write stands anyway.
        let _ = self.reply.send(answer);
    }
}

fn in_savepoint<T>(conn: &Connection, work: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    conn.execute_batch("SAVEPOINT job").map_err(sql_error)?;
    let out = catch_unwind(AssertUnwindSafe(|| work(conn)))
        .unwrap_or_else(|_| Err(StoreError::invalid("a write job panicked")));
    match out {
        Ok(v) => {
            conn.execute_batch("RELEASE job").map_err(sql_error)?;
            Ok(v)
        }
        Err(e) => {
            // If even the rollback fails the batch's commit reports it.
            let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
            Err(e)
        }
    }
}

/// The handle callers use; dropping it stops the thread after the jobs
/// already sent are done.
#[derive(Debug)]
pub(crate) struct Writer {
    tx: Option<mpsc::Sender<Box<dyn Job>>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Writer {
    /// Starts the writer thread on `conn`; it reports its commits to
    /// `checkpoints`.
    pub(crate) fn start(
        conn: Connection,
        checkpoints: Checkpointer,
        max_jobs: usize,
        max_weight: usize,
    ) -> Result<Writer> {
        let (tx, rx) = mpsc::channel::<Box<dyn Job>>();
        let thread = thread::Builder::new()
            .name("storage-writer".into())
            .spawn(move || run(conn, rx, &checkpoints, max_jobs, max_weight))
            .map_err(|e| {
                StoreError::unavailable("cannot start the writer thread").with_source(e)
            })?;
        Ok(Writer {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Runs `work` in the next batch; resolves after the commit.
    pub(crate) async fn write<T, F>(&self, weight: usize, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Typed {
            work: Some(work),
            weight,
            out: None,
            reply,
        });
        self.tx
            .as_ref()
            .ok_or_else(|| StoreError::unavailable("the store is closing"))?
            .send(job)
            .map_err(|_| StoreError::unavailable("the writer thread stopped"))?;
        answer
            .await
            .map_err(|_| StoreError::unavailable("the writer thread stopped"))?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(
    conn: Connection,
    rx: mpsc::Receiver<Box<dyn Job>>,
    checkpoints: &Checkpointer,
    max_jobs: usize,
    max_weight: usize,
) {
    while let Ok(first) = rx.recv() {
        let mut weight = first.weight();
        let mut batch = vec![first];
        while batch.len() < max_jobs && weight < max_weight {
            match rx.try_recv() {
                Ok(job) => {
                    weight += job.weight();
                    batch.push(job);
                }
                Err(_) => break,
            }
        }
        let committed = run_batch(&conn, &mut batch);
        match &committed {
            Ok(()) => checkpoints.committed(weight),
            Err(e) => tracing::warn!(error = %e, jobs = batch.len(), "storage batch not committed"),
        }
        for job in batch {
            job.finish(committed.as_ref().map(|_| ()));
        }
    }
}

fn run_batch(conn: &Connection, batch: &mut [Box<dyn Job>]) -> Result<()> {
    // IMMEDIATE takes the write lock now (waiting up to the busy timeout
    // while another process writes), so the commit cannot fail on a lock.
    conn.execute_batch("BEGIN IMMEDIATE").map_err(sql_error)?;
    for job in batch.iter_mut() {
        job.run(conn);
    }
    if let Err(e) = conn.execute_batch("COMMIT") {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(sql_error(e));
    }
    Ok(())
}
