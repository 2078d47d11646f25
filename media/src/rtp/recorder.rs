//! A call's recording: one stereo WAV, 8 kHz 16-bit, the customer on the
//! left and the agent on the right.
//!
//! Each channel's decoded packets go through a [`JitterBuffer`], so
//! reordering is undone and duplicates dropped; a channel's timeline
//! follows its RTP timestamps, so lost packets and silence suppression
//! become silence of the right length. Both channels are written frame by
//! frame against one clock (the recording's start), so a party who joins
//! later, or says nothing, is silence on its side and the two sides stay
//! aligned. Time is an input: `record(…, now)`, `advance(now)`. The shell
//! need not wake every 20 ms for it: `record` first writes what was due
//! before its packet arrived, as a tick at each frame's moment would
//! have, and `advance` by `flush_due()` keeps the file playable through a
//! silence.

use super::jitter::{JitterBuffer, Playout};
use super::prompt::{FRAME, RATE};
use std::collections::VecDeque;
use std::io::{Seek, Write};
use std::time::{Duration, Instant};

/// Jitter absorbed before audio is written.
const DELAY: Duration = Duration::from_millis(60);
const FRAME_TIME: Duration = Duration::from_millis(20);
/// Frames written between two updates of the header: a second.
const FLUSH_EVERY: u64 = 50;
/// A channel more than this far ahead of the clock (a sender whose clock
/// runs fast) loses its oldest audio, so the sides stay aligned.
const MAX_BACKLOG: usize = RATE as usize * 3 / 10;
/// A timestamp jump larger than this (in samples) is a discontinuity, not
/// silence.
const MAX_GAP: u64 = RATE as u64 * 5;

/// The two sides of a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// The customer.
    Left,
    /// The agent.
    Right,
}

#[derive(Debug)]
struct Track {
    /// Decoded packets with their arrival time.
    jitter: JitterBuffer<(Instant, Vec<i16>)>,
    /// Audio from the recording's write position on.
    samples: VecDeque<i16>,
    /// An RTP timestamp and the recording position (in samples) it maps
    /// to: the channel's timeline.
    base: Option<(u32, u64)>,
    ssrc: Option<u32>,
    /// Whether this side ever had audio.
    heard: bool,
}

impl Track {
    fn new() -> Track {
        Track {
            jitter: JitterBuffer::new(RATE, DELAY),
            samples: VecDeque::new(),
            base: None,
            ssrc: None,
            heard: false,
        }
    }

    /// Moves what is due by `now` into `samples`, each packet at its place
    /// on the timeline; `written` is the recording's write position.
    fn drain(&mut self, now: Instant, written: u64, start: Instant) {
        while let Some(p) = self.jitter.pop(now) {
            let Playout::Packet {
                timestamp,
                payload: (arrival, pcm),
                ..
            } = p
            else {
                // Losses show as timestamp gaps on the next packet.
                continue;
            };
            let end = written + self.samples.len() as u64;
            let on_line = self.base.and_then(|(ts, pos)| {
                let p = pos as i64 + i64::from(timestamp.wrapping_sub(ts) as i32);
                let p = u64::try_from(p).ok()?;
                (p + MAX_GAP >= end && p <= end + MAX_GAP).then_some(p)
            });
            // A first packet, or a discontinuity: it goes where it arrived.
            let pos = on_line.unwrap_or_else(|| {
                let at = arrival.saturating_duration_since(start);
                let p = (at.as_micros() as u64 * u64::from(RATE) / 1_000_000).max(written);
                self.base = Some((timestamp, p));
                p
            });
            let len = pcm.len() as u64;
            if pos + len <= written {
                continue; // its moment has been written already
            }
            let skip = written.saturating_sub(pos);
            let rel = (pos + skip - written) as usize;
            if rel > self.samples.len() {
                let pad = rel - self.samples.len();
                self.samples.extend(std::iter::repeat_n(0, pad));
            } else {
                self.samples.truncate(rel);
            }
            self.samples.extend(&pcm[skip as usize..]);
            self.heard = true;
        }
        if self.samples.len() > MAX_BACKLOG {
            // A sender whose clock runs fast: its oldest audio goes, and
            // its timeline moves back by as much.
            let excess = self.samples.len() - MAX_BACKLOG;
            self.samples.drain(..excess);
            if let Some((ts, pos)) = self.base {
                self.base = Some((ts, pos.saturating_sub(excess as u64)));
            }
        }
    }

    fn take(&mut self, frame: &mut [i16; FRAME]) {
        for s in frame.iter_mut() {
            *s = self.samples.pop_front().unwrap_or(0);
        }
    }
}

/// One stereo frame, interleaved, in one write (`hound`'s checked
/// `write_sample` dispatches on the format and writes for every sample).
fn write_frame<W: Write + Seek>(
    writer: &mut hound::WavWriter<W>,
    left: &[i16; FRAME],
    right: &[i16; FRAME],
) -> Result<(), hound::Error> {
    let mut w = writer.get_i16_writer(2 * FRAME as u32);
    for (l, r) in left.iter().zip(right) {
        w.write_sample(*l);
        w.write_sample(*r);
    }
    w.flush()
}

/// What a finished recording holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    pub duration: Duration,
    /// Whether each side (left, right) had any audio.
    pub heard: (bool, bool),
}

/// A stereo recording being written to `W`.
pub struct StereoRecorder<W: Write + Seek> {
    writer: hound::WavWriter<W>,
    tracks: [Track; 2],
    start: Instant,
    frames: u64,
    /// Frames written since the header was last brought up to date.
    unflushed: u64,
}

impl<W: Write + Seek> std::fmt::Debug for StereoRecorder<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StereoRecorder")
            .field("frames", &self.frames)
            .field("tracks", &self.tracks)
            .finish_non_exhaustive()
    }
}

impl<W: Write + Seek> StereoRecorder<W> {
    /// Starts a recording at `start`.
    pub fn new(out: W, start: Instant) -> Result<StereoRecorder<W>, hound::Error> {
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        Ok(StereoRecorder {
            writer: hound::WavWriter::new(out, spec)?,
            tracks: [Track::new(), Track::new()],
            start,
            frames: 0,
            unflushed: 0,
        })
    }

    /// Decoded audio of one RTP packet on `channel`.
    pub fn push(&mut self, channel: Channel, rtp: (u32, u16, u32), pcm: Vec<i16>, now: Instant) {
        let (ssrc, seq, ts) = rtp;
        let t = &mut self.tracks[channel as usize];
        if t.ssrc != Some(ssrc) {
            // A new source starts a new timeline where it arrives.
            t.ssrc = Some(ssrc);
            t.base = None;
        }
        t.jitter.insert(ssrc, seq, ts, (now, pcm), now);
    }

    /// When the next frame is due to be written.
    pub fn poll_timeout(&self) -> Instant {
        self.start + FRAME_TIME * (self.frames as u32 + 1) + DELAY
    }

    /// One packet's audio as it arrives: what was due before it is
    /// written first, so no tick is needed between packets.
    pub fn record(
        &mut self,
        channel: Channel,
        rtp: (u32, u16, u32),
        pcm: Vec<i16>,
        now: Instant,
    ) -> Result<(), hound::Error> {
        self.advance(now)?;
        self.push(channel, rtp, pcm, now);
        Ok(())
    }

    /// When, with no audio arriving, `advance` must be called so that the
    /// file's header is brought up to date (once a second of recording).
    pub fn flush_due(&self) -> Instant {
        let frames = self.frames + FLUSH_EVERY.saturating_sub(self.unflushed);
        self.start + FRAME_TIME * frames as u32 + DELAY
    }

    /// Writes every frame due by `now`.
    pub fn advance(&mut self, now: Instant) -> Result<(), hound::Error> {
        let mut left = [0i16; FRAME];
        let mut right = [0i16; FRAME];
        loop {
            let due = self.poll_timeout();
            if due > now {
                break;
            }
            let written = self.frames * FRAME as u64;
            for t in &mut self.tracks {
                t.drain(due, written, self.start);
            }
            self.tracks[0].take(&mut left);
            self.tracks[1].take(&mut right);
            write_frame(&mut self.writer, &left, &right)?;
            self.frames += 1;
            self.unflushed += 1;
        }
        // Once a second the header is made valid, so a crash leaves a
        // playable file.
        if self.unflushed >= FLUSH_EVERY {
            self.writer.flush()?;
            self.unflushed = 0;
        }
        Ok(())
    }

    /// Writes what is due and buffered, and closes the file.
    pub fn finish(mut self, now: Instant) -> Result<Recorded, hound::Error> {
        self.advance(now)?;
        // What is still in the jitter buffers plays out now.
        let late = now + DELAY + Duration::from_secs(1);
        let written = self.frames * FRAME as u64;
        for t in &mut self.tracks {
            t.drain(late, written, self.start);
        }
        let mut left = [0i16; FRAME];
        let mut right = [0i16; FRAME];
        while self.tracks.iter().any(|t| !t.samples.is_empty()) {
            self.tracks[0].take(&mut left);
            self.tracks[1].take(&mut right);
            write_frame(&mut self.writer, &left, &right)?;
            self.frames += 1;
        }
        let heard = (self.tracks[0].heard, self.tracks[1].heard);
        self.writer.finalize()?;
        Ok(Recorded {
            duration: FRAME_TIME * self.frames as u32,
            heard,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn read(bytes: Vec<u8>) -> (Vec<i16>, Vec<i16>) {
        let mut r = hound::WavReader::new(Cursor::new(bytes)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.spec().channels, 2);
        assert_eq!(r.spec().sample_rate, 8000);
        let s: Vec<i16> = r.samples::<i16>().map_while(Result::ok).collect();
        let l = s.iter().step_by(2).copied().collect();
        let rr = s.iter().skip(1).step_by(2).copied().collect();
        (l, rr)
    }

    fn record(
        f: impl FnOnce(&mut StereoRecorder<&mut Cursor<Vec<u8>>>, Instant) -> Instant,
    ) -> (Recorded, Vec<i16>, Vec<i16>) {
        let mut c = Cursor::new(Vec::new());
        let t0 = Instant::now();
        let done;
        {
            let mut rec = StereoRecorder::new(&mut c, t0).unwrap_or_else(|e| panic!("{e}"));
            let end = f(&mut rec, t0);
            done = rec.finish(end).unwrap_or_else(|e| panic!("{e}"));
        }
        let (l, r) = read(c.into_inner());
        (done, l, r)
    }

    /// Both sides talking with jitter, a reordered pair and a pause on
    /// the agent's side: (arrival in µs, channel, seq, timestamp).
    fn conversation() -> Vec<(u64, Channel, u16, u32)> {
        let mut p = Vec::new();
        for i in 0u32..150 {
            let jitter = u64::from(i * 7919 % 13) * 1000;
            p.push((
                u64::from(i) * 20_000 + jitter,
                Channel::Left,
                i as u16,
                160 * i,
            ));
            if !(60..90).contains(&i) {
                p.push((
                    u64::from(i) * 20_000 + 5_000,
                    Channel::Right,
                    500 + i as u16,
                    33 + 160 * i,
                ));
            }
        }
        p.swap(40, 42);
        p.sort_by_key(|x| x.0);
        p
    }

    #[test]
    fn recording_each_packet_as_it_arrives_writes_what_a_tick_would() {
        let play = |ticked: bool| {
            record(|rec, t0| {
                let mut next_tick = t0;
                let mut now = t0;
                for (at, ch, seq, ts) in conversation() {
                    now = t0 + Duration::from_micros(at);
                    if ticked {
                        while next_tick <= now {
                            rec.advance(next_tick).unwrap_or_else(|e| panic!("{e}"));
                            next_tick += FRAME_TIME;
                        }
                        rec.push(ch, (ch as u32, seq, ts), vec![seq as i16; 160], now);
                    } else {
                        rec.record(ch, (ch as u32, seq, ts), vec![seq as i16; 160], now)
                            .unwrap_or_else(|e| panic!("{e}"));
                    }
                }
                // Written as it went: nothing due by the last packet waits.
                assert!(rec.poll_timeout() > now, "frames left for the end");
                t0 + Duration::from_secs(3)
            })
        };
        let (ticked, tl, tr) = play(true);
        let (lazy, ll, lr) = play(false);
        assert_eq!(ticked, lazy);
        assert_eq!(ticked.heard, (true, true));
        assert_eq!(tl, ll);
        assert_eq!(tr, lr);
        // The agent's pause is silence on its side only.
        assert!(lr[70 * 160..85 * 160].iter().all(|&s| s == 0));
        assert!(ll[70 * 160..85 * 160].iter().all(|&s| s != 0));
    }

    #[test]
    fn advancing_by_flush_due_keeps_the_header_up_to_date_in_silence() {
        let mut c = Cursor::new(Vec::new());
        let t0 = Instant::now();
        let mut rec = StereoRecorder::new(&mut c, t0).unwrap_or_else(|e| panic!("{e}"));
        for second in 1..=3u64 {
            let due = rec.flush_due();
            rec.advance(due - Duration::from_millis(1))
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(rec.unflushed > 0, "flushed before its time");
            rec.advance(due).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(rec.unflushed, 0);
            assert_eq!(rec.frames, second * FLUSH_EVERY);
        }
    }

    #[test]
    fn both_sides_are_aligned_on_one_clock() {
        // The customer talks from the start; the agent joins at 1 s. Each
        // packet carries its own position as its sample values.
        let (done, l, r) = record(|rec, t0| {
            for i in 0u32..100 {
                let now = t0 + FRAME_TIME * i;
                rec.push(
                    Channel::Left,
                    (1, i as u16, 160 * i),
                    vec![1000 + i as i16; 160],
                    now,
                );
                if i >= 50 {
                    let j = i - 50;
                    rec.push(
                        Channel::Right,
                        (2, 9000 + j as u16, 77 + 160 * j),
                        vec![2000 + i as i16; 160],
                        now,
                    );
                }
                rec.advance(now).unwrap_or_else(|e| panic!("{e}"));
            }
            t0 + FRAME_TIME * 100
        });
        assert_eq!(done.heard, (true, true));
        assert_eq!(l.len(), r.len());
        // Frame k holds packet k on the left; the right is silent for the
        // first second, then holds the packet of that same moment.
        for k in [0usize, 10, 49, 50, 75, 99] {
            assert_eq!(l[k * 160 + 80], 1000 + k as i16, "left frame {k}");
            let want = if k < 50 { 0 } else { 2000 + k as i16 };
            assert_eq!(r[k * 160 + 80], want, "right frame {k}");
        }
        assert_eq!(l.len(), 100 * 160);
    }

    #[test]
    fn reordering_is_undone_and_losses_are_silence_of_the_right_length() {
        let (_, l, r) = record(|rec, t0| {
            // Packets 0..20, 5 lost, 8 and 9 swapped.
            let order = [
                0u32, 1, 2, 3, 4, 6, 7, 9, 8, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19,
            ];
            for (n, &i) in order.iter().enumerate() {
                let now = t0 + FRAME_TIME * n as u32;
                rec.push(
                    Channel::Left,
                    (1, i as u16, 160 * i),
                    vec![100 + i as i16; 160],
                    now,
                );
                rec.advance(now).unwrap_or_else(|e| panic!("{e}"));
            }
            t0 + FRAME_TIME * 20
        });
        let frames: Vec<i16> = l.chunks(160).map(|f| f[0]).collect();
        let want: Vec<i16> = (0..20).map(|i| if i == 5 { 0 } else { 100 + i }).collect();
        assert_eq!(frames, want);
        assert!(r.iter().all(|&s| s == 0));
    }

    #[test]
    fn silence_suppression_keeps_the_timeline() {
        // 10 packets, then a 400 ms pause (timestamps jump), 10 more.
        let (_, l, _) = record(|rec, t0| {
            for i in 0u32..20 {
                let (ts, at) = if i < 10 {
                    (160 * i, FRAME_TIME * i)
                } else {
                    (160 * i + 3200, FRAME_TIME * i + Duration::from_millis(400))
                };
                rec.push(Channel::Left, (1, i as u16, ts), vec![500; 160], t0 + at);
                rec.advance(t0 + at).unwrap_or_else(|e| panic!("{e}"));
            }
            t0 + Duration::from_millis(800)
        });
        let loud: Vec<bool> = l.chunks(160).map(|f| f[0] != 0).collect();
        assert_eq!(loud.len(), 40);
        assert!(loud[..10].iter().all(|&x| x));
        assert!(loud[10..30].iter().all(|&x| !x), "{loud:?}");
        assert!(loud[30..].iter().all(|&x| x));
    }

    #[test]
    fn a_recording_nobody_spoke_in_is_silence_of_the_call_length() {
        let (done, l, r) = record(|rec, t0| {
            let end = t0 + Duration::from_secs(2);
            rec.advance(end).unwrap_or_else(|e| panic!("{e}"));
            end
        });
        assert_eq!(done.heard, (false, false));
        // Two seconds less the jitter delay not yet elapsed at the end.
        assert_eq!(l.len(), 97 * 160);
        assert!(l.iter().chain(&r).all(|&s| s == 0));
    }

    #[test]
    fn a_sender_with_a_fast_clock_does_not_stretch_the_recording() {
        // 20 ms packets every 19.6 ms (a 2% fast clock) for 30 s: 1531
        // packets, 30.6 s of audio in 30 s of call.
        let (done, l, _) = record(|rec, t0| {
            let mut now = t0;
            for i in 0u32..1531 {
                now = t0 + Duration::from_micros(19_600 * u64::from(i));
                rec.push(Channel::Left, (1, i as u16, 160 * i), vec![300; 160], now);
                rec.advance(now).unwrap_or_else(|e| panic!("{e}"));
            }
            now
        });
        // At most the backlog cap beyond the call's length.
        assert!(
            done.duration <= Duration::from_millis(30_000 + 300 + 80),
            "{:?}",
            done.duration
        );
        assert!(l.len() as u64 <= 8 * (30_000 + 380));
    }
}
