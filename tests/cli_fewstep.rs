//! `minus generate` with the few-step samplers and with guidance off: the `--eta` flag,
//! the 50-step limit, and the note that negative images need CFG > 1.

mod common;

use std::process::Output;

use common::{fixtures, generate_command, temp_dir};
use minus::schedulers::SamplerKind;

/// `minus generate` on the CPU with the tiny models, the house as image prompt and the
/// lawn as negative image (when `negative`), 64×64, writing `out`; `args` come first.
fn generate(args: &str, negative: bool, out: &std::path::Path) -> Output {
    let mut command = generate_command("ip-adapter_sd15.safetensors");
    command
        .args(["--width", "64", "--height", "64"])
        .args(args.split_whitespace())
        .arg("--output")
        .arg(out);
    if negative {
        command
            .arg("--negative-image")
            .arg(fixtures().join("images/lawn.png"));
    }
    command.output().expect("minus runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn note_lines(output: &Output) -> usize {
    stderr(output)
        .lines()
        .filter(|line| line.starts_with("note: the negative image prompt needs CFG > 1"))
        .count()
}

#[test]
fn negative_images_at_cfg_1_or_below_get_one_note_line() {
    let scratch = temp_dir("cli-guidance-note");
    let out = scratch.join("out.png");
    for (args, negative, notes) in [
        ("--cfg 1", true, 1),
        ("--cfg 0.5", true, 1),
        ("--cfg 7.5", true, 0),
        ("--cfg 1.01", true, 0),
        ("--cfg 1", false, 0),
    ] {
        let output = generate(&format!("--steps 1 --seed 3 {args}"), negative, &out);
        assert!(output.status.success(), "{args}: {}", stderr(&output));
        assert_eq!(
            note_lines(&output),
            notes,
            "{args}, negative {negative}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn tcd_keeps_its_eta_in_the_settings() {
    let scratch = temp_dir("cli-tcd");
    let out = scratch.join("tcd.png");
    let output = generate(
        "--sampler tcd --eta 0.6 --steps 2 --cfg 2 --seed 5",
        true,
        &out,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let bytes = std::fs::read(&out).expect("output");
    let request = minus::output::read_request(&bytes).expect("embedded settings");
    assert_eq!(request.sampler, SamplerKind::Tcd);
    assert_eq!(request.eta, 0.6);
    let lcm = scratch.join("lcm.png");
    let output = generate("--scheduler lcm --steps 2 --cfg 2 --seed 5", true, &lcm);
    assert!(output.status.success(), "{}", stderr(&output));
    let bytes = std::fs::read(&lcm).expect("output");
    let request = minus::output::read_request(&bytes).expect("embedded settings");
    assert_eq!(request.sampler, SamplerKind::Lcm);
}

#[test]
fn eta_out_of_range_and_too_many_few_steps_are_usage_errors() {
    let scratch = temp_dir("cli-fewstep-usage");
    let out = scratch.join("x.png");
    for (args, expected) in [
        (
            "--sampler tcd --eta 1.5",
            "eta must be a number from 0 to 1, got 1.5",
        ),
        (
            "--sampler tcd --eta=-0.1",
            "eta must be a number from 0 to 1",
        ),
        (
            "--sampler lcm --steps 51",
            "steps must be 1..=50 with LCM, got 51",
        ),
    ] {
        let output = generate(args, true, &out);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args}: {message}");
        assert!(message.contains(expected), "{args}: {message}");
        assert!(!out.exists(), "{args}: wrote an image");
    }
}
