//! baresip, a real soft phone, registers with its password and calls the
//! diagnostic numbers; what it heard is read back from the WAV files its
//! `sndfile` module writes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{free_port, rand_u32, require, Node};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

struct Phone {
    dir: PathBuf,
}

impl Phone {
    fn new(node: &Node, user: &str, password: &str) -> Phone {
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
            .arg("one two three four five six seven eight nine ten")
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
            free_port(),
            dir.join("in.wav").display(),
            dir.join("dump").display()
        );
        std::fs::write(dir.join("config"), config).expect("config");
        std::fs::write(
            dir.join("accounts"),
            format!(
                "<sip:{user}@{}>;auth_pass={password};regint=600\n",
                node.sip
            ),
        )
        .expect("accounts");
        Phone { dir }
    }

    /// Runs baresip for `secs`, dialing `target` if given; returns its output.
    fn run(&self, dial: Option<&str>, secs: u32) -> String {
        let mut cmd = Command::new("timeout");
        cmd.arg((secs + 10).to_string())
            .arg("baresip")
            .arg("-f")
            .arg(&self.dir);
        if let Some(t) = dial {
            cmd.arg("-e").arg(format!("/dial {t}"));
        }
        let out = cmd
            .arg("-t")
            .arg(secs.to_string())
            .output()
            .expect("run baresip");
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    /// Samples of what the phone heard (the decoder side of sndfile).
    fn heard(&self) -> Vec<i16> {
        let dump = self.dir.join("dump");
        let file = std::fs::read_dir(&dump)
            .expect("dump dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
            .expect("baresip wrote no received-audio file");
        read_wav(&file)
    }
}

fn read_wav(p: &Path) -> Vec<i16> {
    hound::WavReader::open(p)
        .expect("wav")
        .samples::<i16>()
        .map_while(Result::ok)
        .collect()
}

/// Root-mean-square level of 20 ms windows above a speech threshold.
fn loud_windows(s: &[i16]) -> usize {
    s.chunks(160)
        .filter(|w| {
            let e = w.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / w.len() as f64;
            e.sqrt() > 500.0
        })
        .count()
}

#[test]
fn baresip_registers_with_its_password() {
    let mut node = Node::start();
    let phone = Phone::new(&node, "1001", "pass1001");
    let out = phone.run(None, 2);
    assert!(out.contains("200 OK"), "{out}");
    assert!(node.wait_log("registered", Duration::from_secs(2)));
    let bad = Phone::new(&node, "1002", "not-the-password");
    let out = bad.run(None, 2);
    assert!(out.contains("403"), "{out}");
}

#[test]
fn baresip_hears_its_own_speech_from_the_echo_test() {
    let node = Node::start();
    let phone = Phone::new(&node, "1001", "pass1001");
    let out = phone.run(Some(&format!("sip:*43@{}", node.sip)), 6);
    assert!(out.contains("Call established"), "{out}");
    let heard = phone.heard();
    let sent = read_wav(&phone.dir.join("in.wav"));
    // The echo returns the speech: most of the spoken windows come back.
    let (h, s) = (loud_windows(&heard), loud_windows(&sent));
    assert!(s > 50, "test speech too quiet: {s}");
    assert!(h * 10 >= s * 6, "heard {h} loud windows of {s} sent");
}

#[test]
fn baresip_hears_the_prompt_and_the_node_hangs_up() {
    let node = Node::start();
    let phone = Phone::new(&node, "1001", "pass1001");
    let out = phone.run(Some(&format!("sip:*44@{}", node.sip)), 9);
    assert!(out.contains("Call established"), "{out}");
    // The node ended the call (a BYE from the far end) well before
    // baresip's own 9 s limit.
    let secs: u32 = out
        .split("terminated (duration: ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(99);
    assert!(secs < 8, "call lasted {secs} s: {out}");
    assert!(
        loud_windows(&phone.heard()) > 25,
        "the prompt was not heard"
    );
}
