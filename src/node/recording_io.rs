//! Call recordings' and voicemails' files, written by a thread of their own.
//!
//! Creating a file and writing to it can block: the file system's journal
//! may be committing, the page cache has to be filled. On a tokio worker
//! that would hold up every task queued behind the leg (a call's ring
//! among them). So a leg's recorder writes into a [`RecordingFile`], which
//! only buffers and hands what it has to the recordings thread; the thread
//! creates the file, writes each piece at its offset and closes it, in
//! the order the leg wrote them. A failure (a full disk) is logged by the
//! thread, and that recording's later writes are dropped. The thread lets
//! work gather for 5 ms before it takes it, so that the legs' hand-overs
//! do not wake it one at a time, and it runs at the lowest priority
//! (nice 19): when the CPUs are busy, the calls' threads go first.

use std::collections::{HashMap, HashSet};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::OnceLock;
use std::time::Duration;
use switchboard_media::rtp::recorder::Recorded;

/// A recording's write buffer: 128 ms of stereo audio (the default 8 KiB
/// would be an eighth of a bridged call's memory).
const BUFFER: usize = 4096;

enum Op {
    Open {
        id: u64,
        path: PathBuf,
    },
    Write {
        id: u64,
        at: u64,
        bytes: Vec<u8>,
    },
    Close {
        id: u64,
    },
    /// The leg finished the file: logged once it is closed. `None` when
    /// the leg gave up on it unfinished (nothing to log).
    Written {
        id: u64,
        done: Option<(PathBuf, Finished)>,
    },
}

/// What a finished file holds, for its log line.
enum Finished {
    Call(Recorded),
    Voicemail(Duration),
}

/// The recordings thread, started on first use.
fn thread() -> Option<&'static Sender<Op>> {
    static TX: OnceLock<Option<Sender<Op>>> = OnceLock::new();
    TX.get_or_init(|| {
        let (tx, rx) = mpsc::channel();
        match std::thread::Builder::new()
            .name("recordings".into())
            .spawn(move || {
                // File work can wait: the calls' threads go first when
                // the CPUs are busy (Linux: this thread alone).
                if let Err(e) = rustix::process::setpriority_process(None, 19) {
                    tracing::debug!(error = %e, "the recordings thread keeps its priority");
                }
                write_files(rx)
            }) {
            Ok(_) => Some(tx),
            Err(e) => {
                tracing::error!(error = %e, "no recordings thread: calls are not recorded");
                None
            }
        }
    })
    .as_ref()
}

/// A recording's file as the leg sees it: writes and seeks are kept in
/// order and handed to the recordings thread, nothing here blocks.
pub struct RecordingFile {
    id: u64,
    to: Sender<Op>,
    /// Where the next write goes, and the file's length so far.
    pos: u64,
    len: u64,
    /// Bytes not handed over yet, and where they go.
    buf: Vec<u8>,
    buf_at: u64,
}

impl RecordingFile {
    /// A new file at `path` (its directory is created if need be).
    pub fn create(path: PathBuf) -> io::Result<RecordingFile> {
        static IDS: AtomicU64 = AtomicU64::new(1);
        let to = thread()
            .ok_or_else(|| io::Error::other("no recordings thread"))?
            .clone();
        let id = IDS.fetch_add(1, Ordering::Relaxed);
        to.send(Op::Open { id, path })
            .map_err(|_| io::Error::other("the recordings thread is gone"))?;
        Ok(RecordingFile {
            id,
            to,
            pos: 0,
            len: 0,
            buf: Vec::with_capacity(BUFFER),
            buf_at: 0,
        })
    }

    /// Tells the thread to log the finished recording once its file is
    /// closed (after this file is dropped).
    pub fn written_note(&self) -> WrittenNote {
        WrittenNote {
            id: self.id,
            to: self.to.clone(),
            told: false,
        }
    }

    fn hand_over(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let bytes = std::mem::replace(&mut self.buf, Vec::with_capacity(BUFFER));
            self.to
                .send(Op::Write {
                    id: self.id,
                    at: self.buf_at,
                    bytes,
                })
                .map_err(|_| io::Error::other("the recordings thread is gone"))?;
        }
        self.buf_at = self.pos;
        Ok(())
    }
}

impl Write for RecordingFile {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        if self.pos != self.buf_at + self.buf.len() as u64 {
            // A write elsewhere (the header): what came before goes first.
            self.hand_over()?;
        }
        self.buf.extend_from_slice(b);
        self.pos += b.len() as u64;
        self.len = self.len.max(self.pos);
        if self.buf.len() >= BUFFER {
            self.hand_over()?;
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.hand_over()
    }
}

impl Seek for RecordingFile {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let from = |base: u64, d: i64| base.checked_add_signed(d);
        let pos = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::Current(d) => from(self.pos, d),
            SeekFrom::End(d) => from(self.len, d),
        }
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        self.pos = pos;
        Ok(pos)
    }
}

impl Drop for RecordingFile {
    fn drop(&mut self) {
        let _ = self.hand_over();
        let _ = self.to.send(Op::Close { id: self.id });
    }
}

/// See [`RecordingFile::written_note`].
pub struct WrittenNote {
    id: u64,
    to: Sender<Op>,
    told: bool,
}

impl WrittenNote {
    /// A call's recording.
    pub fn send(self, path: PathBuf, recorded: Recorded) {
        self.finished(path, Finished::Call(recorded));
    }

    /// A caller's voicemail, `length` long.
    pub fn voicemail(self, path: PathBuf, length: Duration) {
        self.finished(path, Finished::Voicemail(length));
    }

    fn finished(mut self, path: PathBuf, what: Finished) {
        self.tell(Some((path, what)));
    }

    fn tell(&mut self, done: Option<(PathBuf, Finished)>) {
        if !self.told {
            self.told = true;
            let _ = self.to.send(Op::Written { id: self.id, done });
        }
    }
}

/// A note dropped unsent still tells the thread, which then forgets the
/// recording (it may be keeping it among the failed ones).
impl Drop for WrittenNote {
    fn drop(&mut self) {
        self.tell(None);
    }
}

/// The files the thread has open, and the recordings whose file failed
/// (their later writes are dropped).
#[derive(Default)]
struct Files {
    open: HashMap<u64, (std::fs::File, PathBuf)>,
    failed: HashSet<u64>,
}

/// How long the thread lets work gather before it takes it: the legs'
/// hand-overs then do not wake it one by one (each wake would take the
/// CPU from the worker that handed over).
const GATHER: Duration = Duration::from_millis(5);

fn write_files(rx: Receiver<Op>) {
    let mut files = Files::default();
    while let Ok(first) = rx.recv() {
        files.take(first);
        std::thread::sleep(GATHER);
        while let Ok(op) = rx.try_recv() {
            files.take(op);
        }
    }
}

impl Files {
    fn take(&mut self, op: Op) {
        let (files, failed) = (&mut self.open, &mut self.failed);
        match op {
            Op::Open { id, path } => {
                if let Some(dir) = path.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                match std::fs::File::create(&path) {
                    Ok(f) => {
                        files.insert(id, (f, path));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, path = %path.display(), "cannot create the recording's file");
                        failed.insert(id);
                    }
                }
            }
            Op::Write { id, at, bytes } => {
                let Some((f, path)) = files.get(&id) else {
                    return;
                };
                if let Err(e) = f.write_all_at(&bytes, at) {
                    tracing::warn!(error = %e, path = %path.display(), "recording stopped: its file cannot be written");
                    files.remove(&id);
                    failed.insert(id);
                }
            }
            Op::Close { id } => {
                files.remove(&id);
            }
            Op::Written { id, done } => {
                let failed = failed.remove(&id);
                let Some((path, what)) = done.filter(|_| !failed) else {
                    return;
                };
                match what {
                    Finished::Call(recorded) => tracing::info!(
                        path = %path.display(),
                        secs = recorded.duration.as_secs(),
                        customer_heard = recorded.heard.0,
                        agent_heard = recorded.heard.1,
                        "call recording written"
                    ),
                    Finished::Voicemail(length) => tracing::info!(
                        path = %path.display(),
                        secs = length.as_secs(),
                        "voicemail written"
                    ),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use switchboard_media::rtp::recorder::{Channel, StereoRecorder};

    /// Waits (bounded) until `path` holds a WAV file of at least `min`
    /// samples (the thread may still be writing it).
    fn read_back(path: &std::path::Path, min: usize) -> (u16, Vec<i16>) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(mut r) = hound::WavReader::open(path) {
                let samples: Result<Vec<i16>, _> = r.samples::<i16>().collect();
                if let Ok(s) = samples {
                    if s.len() >= min {
                        return (r.spec().channels, s);
                    }
                }
            }
            assert!(Instant::now() < deadline, "no whole file at {path:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_recording_written_through_the_thread_reads_back_whole() {
        let dir = std::env::temp_dir().join(format!("sb-recio-{}", rand::random::<u32>()));
        let path = dir.join("nested").join("call.wav");
        let t0 = Instant::now();
        let file = RecordingFile::create(path.clone()).unwrap_or_else(|e| panic!("{e}"));
        let mut rec = StereoRecorder::new(file, t0).unwrap_or_else(|e| panic!("{e}"));
        // Two seconds of the customer saying 1000, packet by packet, so
        // the header is brought up to date on the way (once a second).
        for i in 0..100u32 {
            let now = t0 + Duration::from_millis(20 * u64::from(i));
            rec.record(Channel::Left, (7, i as u16, 160 * i), vec![1000; 160], now)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let done = rec
            .finish(t0 + Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(done.heard.0 && !done.heard.1);
        // 2 s of stereo, but for the 60 ms the jitter buffer holds back.
        let (channels, samples) = read_back(&path, 2 * (100 * 160 - 480));
        assert_eq!(channels, 2);
        let left: Vec<i16> = samples.iter().step_by(2).copied().collect();
        let loud = left.iter().filter(|s| **s == 1000).count();
        assert!(loud >= 100 * 160 - 480, "{loud} samples of the customer");
        assert!(samples.iter().skip(1).step_by(2).all(|s| *s == 0));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_voicemail_written_through_the_thread_is_a_whole_mono_file() {
        let dir = std::env::temp_dir().join(format!("sb-recio-{}", rand::random::<u32>()));
        let path = dir.join("voicemail").join("vm.wav");
        let file = RecordingFile::create(path.clone()).unwrap_or_else(|e| panic!("{e}"));
        let note = file.written_note();
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::new(file, spec).unwrap_or_else(|e| panic!("{e}"));
        // 1.5 s of a message: more than one buffer's worth.
        for i in 0..12_000i32 {
            w.write_sample((i % 2000 - 1000) as i16)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        w.finalize().unwrap_or_else(|e| panic!("{e}"));
        note.voicemail(path.clone(), Duration::from_millis(1500));
        let (channels, samples) = read_back(&path, 12_000);
        assert_eq!(channels, 1);
        assert_eq!(samples.len(), 12_000, "the header counts every sample");
        assert_eq!(samples[1999], 999);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_recording_is_forgotten_whether_its_note_is_sent_or_dropped() {
        let (to, rx) = std::sync::mpsc::channel();
        let mut files = Files::default();
        let dir = std::env::temp_dir().join(format!("sb-recio-{}", rand::random::<u32>()));
        // A directory stands where each file should be: neither opens.
        for id in [1, 2] {
            let path = dir.join(format!("{id}.wav"));
            std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("{e}"));
            files.take(Op::Open { id, path });
        }
        assert_eq!(files.failed.len(), 2);
        let note = |id| WrittenNote {
            id,
            to: to.clone(),
            told: false,
        };
        // One leg finished its file; the other gave up and dropped its note.
        note(1).voicemail(dir.join("1.wav"), Duration::ZERO);
        drop(note(2));
        let told: Vec<Op> = rx.try_iter().collect();
        assert_eq!(told.len(), 2, "each note tells the thread once");
        assert!(matches!(
            told[0],
            Op::Written {
                id: 1,
                done: Some(_)
            }
        ));
        assert!(matches!(told[1], Op::Written { id: 2, done: None }));
        for op in told {
            files.take(op);
        }
        assert!(files.failed.is_empty(), "{:?} still kept", files.failed);
        assert!(files.open.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn seeks_and_writes_land_where_they_were_made() {
        let dir = std::env::temp_dir().join(format!("sb-recio-{}", rand::random::<u32>()));
        let path = dir.join("f.bin");
        let mut f = RecordingFile::create(path.clone()).unwrap_or_else(|e| panic!("{e}"));
        let big = vec![7u8; BUFFER * 2 + 10];
        f.write_all(&big).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f.seek(SeekFrom::Start(4)).ok(), Some(4));
        f.write_all(b"head").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f.seek(SeekFrom::End(0)).ok(), Some(big.len() as u64));
        f.write_all(b"tail").unwrap_or_else(|e| panic!("{e}"));
        assert!(f.seek(SeekFrom::Current(-(big.len() as i64) - 5)).is_err());
        let note = f.written_note();
        drop(f);
        // The note follows the close: once it is through, the file is.
        note.send(
            path.clone(),
            Recorded {
                duration: Duration::ZERO,
                heard: (false, false),
            },
        );
        let mut want = big.clone();
        want[4..8].copy_from_slice(b"head");
        want.extend_from_slice(b"tail");
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read(&path).ok().as_deref() != Some(&want[..]) {
            assert!(Instant::now() < deadline, "the file never matched");
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
