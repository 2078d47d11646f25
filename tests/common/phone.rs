//! baresip as a real soft phone: a config directory of its own, speech to
//! send (espeak-ng), and what it heard read back from the WAV files its
//! `sndfile` module writes.

use super::{free_ports, rand_u32, require, Node};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// What a phone's user says.
const SPEECH: &str = "one two three four five six seven eight nine ten";

pub struct Phone {
    pub dir: PathBuf,
}

impl Phone {
    /// A phone for account `user` that answers only what it dials.
    pub fn new(node: &Node, user: &str, password: &str) -> Phone {
        Phone::with(node, user, password, false, SPEECH)
    }

    /// A phone that answers incoming calls at once (an agent's desk phone
    /// in auto-answer mode).
    pub fn auto_answer(node: &Node, user: &str, password: &str) -> Phone {
        Phone::with(node, user, password, true, SPEECH)
    }

    /// An auto-answering phone whose user says `text` (and hangs up when
    /// it is said).
    pub fn auto_answer_saying(node: &Node, user: &str, password: &str, text: &str) -> Phone {
        Phone::with(node, user, password, true, text)
    }

    /// An auto-answering phone whose user says nothing for `secs` (it
    /// sends silence), then hangs up.
    pub fn auto_answer_quiet(node: &Node, user: &str, password: &str, secs: u32) -> Phone {
        let p = Phone::with(node, user, password, true, "quiet");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(p.dir.join("in.wav"), spec).expect("wav");
        for _ in 0..secs * 8000 {
            let _ = w.write_sample(0i16);
        }
        let _ = w.finalize();
        p
    }

    fn with(node: &Node, user: &str, password: &str, auto: bool, text: &str) -> Phone {
        require("baresip", "baresip");
        require("espeak-ng", "espeak-ng");
        let dir =
            std::env::temp_dir().join(format!("sb-baresip-{}-{}", std::process::id(), rand_u32()));
        std::fs::create_dir_all(dir.join("dump")).expect("dir");
        // Speech at 22,050 Hz from espeak-ng, converted to what aufile plays.
        let speech = dir.join("speech.wav");
        let ok = Command::new("espeak-ng")
            .args(["-v", "en-us", "-w"])
            .arg(&speech)
            .arg(text)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "espeak-ng failed");
        let samples = read_wav(&speech);
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(dir.join("in.wav"), spec).expect("wav");
        // Crude 22050 -> 8000 decimation is enough to carry energy.
        for i in 0..(samples.len() * 8000 / 22050) {
            let _ = w.write_sample(samples[i * 22050 / 8000]);
        }
        let _ = w.finalize();
        let config = format!(
            "poll_method epoll\nsip_listen 127.0.0.1:{}\naudio_player alsa,null\naudio_source aufile,{}\naudio_alert alsa,null\nnet_interface 127.0.0.1\nmodule_path /usr/lib/baresip/modules\nmodule g711.so\nmodule aufile.so\nmodule alsa.so\nmodule sndfile.so\nmodule_app account.so\nmodule_app menu.so\nsnd_path {}\n",
            free_ports(2),
            dir.join("in.wav").display(),
            dir.join("dump").display()
        );
        std::fs::write(dir.join("config"), config).expect("config");
        let answer = if auto { ";answermode=auto" } else { "" };
        std::fs::write(
            dir.join("accounts"),
            format!(
                "<sip:{user}@{}>;auth_pass={password};regint=600{answer}\n",
                node.sip
            ),
        )
        .expect("accounts");
        Phone { dir }
    }

    fn command(&self, dial: Option<&str>, secs: u32) -> Command {
        // baresip ends gracefully on the signal, unregistering first, which
        // waits out the retransmissions when its node is gone: `-k` ends it.
        let mut cmd = Command::new("timeout");
        cmd.args(["-k", "2"])
            .arg((secs + 10).to_string())
            .arg("baresip")
            .arg("-f")
            .arg(&self.dir);
        if let Some(t) = dial {
            cmd.arg("-e").arg(format!("/dial {t}"));
        }
        cmd.arg("-t").arg(secs.to_string());
        cmd
    }

    /// Runs baresip for `secs`, dialing `target` if given; returns its output.
    pub fn run(&self, dial: Option<&str>, secs: u32) -> String {
        let out = self.command(dial, secs).output().expect("run baresip");
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    /// Starts baresip for `secs` in the background; [`Phone::output`]
    /// waits for it.
    pub fn spawn(&self, secs: u32) -> Child {
        self.command(None, secs)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start baresip")
    }

    /// What a spawned baresip printed, once it has ended.
    pub fn output(child: Child) -> String {
        let out = child.wait_with_output().expect("baresip output");
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    /// Ends a spawned baresip now (SIGTERM, which `timeout` hands on: it
    /// un-registers and quits) and returns what it printed.
    pub fn stop(child: Child) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        Phone::output(child)
    }

    /// Samples of what the phone heard (the decoder side of sndfile).
    pub fn heard(&self) -> Vec<i16> {
        self.dump("-dec.wav")
    }

    /// Samples of what the phone sent (the encoder side of sndfile).
    pub fn said(&self) -> Vec<i16> {
        self.dump("-enc.wav")
    }

    fn dump(&self, suffix: &str) -> Vec<i16> {
        let dump = self.dir.join("dump");
        let file = std::fs::read_dir(&dump)
            .expect("dump dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.to_string_lossy().ends_with(suffix))
            .unwrap_or_else(|| panic!("baresip wrote no {suffix} file: no call had audio"));
        read_wav(&file)
    }
}

pub fn read_wav(p: &Path) -> Vec<i16> {
    hound::WavReader::open(p)
        .expect("wav")
        .samples::<i16>()
        .map_while(Result::ok)
        .collect()
}

/// The number of 20 ms windows whose RMS level is above a speech threshold.
pub fn loud_windows(s: &[i16]) -> usize {
    s.chunks(160)
        .filter(|w| {
            let e = w.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / w.len() as f64;
            e.sqrt() > 500.0
        })
        .count()
}

/// The share of `w`'s energy at `hz` (Goertzel; 1.0 is a pure tone).
pub fn tone_share(w: &[i16], hz: f64) -> f64 {
    let energy: f64 = w.iter().map(|&x| f64::from(x).powi(2)).sum();
    if energy == 0.0 {
        return 0.0;
    }
    let k = 2.0 * (std::f64::consts::TAU * hz / 8000.0).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in w {
        let s0 = f64::from(x) + k * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - k * s1 * s2) / (energy * w.len() as f64 / 2.0)
}
