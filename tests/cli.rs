//! The `minus generate` command as users run it: files written, settings embedded,
//! and one-line errors with a non-zero exit for bad input.

mod common;

use std::process::Command;

use common::{fixtures, generate_command, model_paths, temp_dir};

fn minus() -> Command {
    Command::new(env!("CARGO_BIN_EXE_minus"))
}

/// `minus generate` on the CPU with the tiny models and the base adapter, the house as
/// image prompt and `negative` (a fixture image) as negative image, writing `out`;
/// `args` (space-separated) come first. Fails the test unless it succeeds.
fn generate_ok(args: &str, negative: &str, out: &std::path::Path) -> std::process::Output {
    let status = generate_command("ip-adapter_sd15.safetensors")
        .args(args.split_whitespace())
        .arg("--negative-image")
        .arg(fixtures().join("images").join(negative))
        .arg("--output")
        .arg(out)
        .output()
        .expect("minus runs");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    status
}

#[test]
fn generate_writes_numbered_pngs_with_settings() {
    let scratch = temp_dir("cli-generate");
    let out = scratch.join("result.png");
    let status = generate_ok(
        "--steps 3 --width 64 --height 64 --seed 9 --batch 2 --negative-ip-weight 0.5",
        "gray.jpg",
        &out,
    );
    assert!(String::from_utf8_lossy(&status.stderr).contains("step 3/3"));
    for i in 0..2 {
        let file = out.with_file_name(format!("result-{i}.png"));
        let bytes = std::fs::read(&file).expect("numbered output");
        let request = minus::output::read_request(&bytes).expect("embedded settings");
        assert_eq!(request.seed, 9);
        assert_eq!(request.negative_ip_weight, 0.5);
        assert_eq!(request.batch, 2);
    }
}

/// Runs `minus generate` with `args` and returns (exit code, stderr).
fn failing(args: &[&str]) -> (Option<i32>, String) {
    let scratch = temp_dir("cli-fail");
    let output = minus()
        // An empty download cache: a missing flag is not filled from the user's.
        .env("HF_HUB_CACHE", scratch.join("empty-hub"))
        .arg("generate")
        .args(["--device", "cpu", "--height", "64"])
        .args(args)
        .arg("--output")
        .arg(scratch.join("x.png"))
        .output()
        .expect("minus runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn bad_input_gives_a_one_line_error_naming_the_problem() {
    let root = fixtures().join("models");
    let model = root.join("sd15").display().to_string();
    let adapter = root
        .join("ip-adapter/models/ip-adapter_sd15.safetensors")
        .display()
        .to_string();
    let encoder = root
        .join("ip-adapter/models/image_encoder")
        .display()
        .to_string();
    let unet_file = root
        .join("sd15/unet/diffusion_pytorch_model.safetensors")
        .display()
        .to_string();
    let scratch = temp_dir("cli-corrupt");
    let corrupt = scratch.join("corrupt.safetensors");
    std::fs::write(&corrupt, b"not safetensors at all").expect("write");
    let corrupt = corrupt.display().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--model", "/no/such/model"], "model not found"),
        (
            vec![
                "--model",
                &model,
                "--ip-adapter",
                &adapter,
                "--image-encoder",
                &encoder,
                "--image",
                "/no/such.png",
            ],
            "/no/such.png",
        ),
        (
            vec![
                "--model",
                &model,
                "--ip-adapter",
                &unet_file,
                "--image-encoder",
                &encoder,
            ],
            "not an IP-Adapter file",
        ),
        (
            vec![
                "--model",
                &model,
                "--ip-adapter",
                &corrupt,
                "--image-encoder",
                &encoder,
            ],
            "not a readable safetensors file",
        ),
        (
            vec![
                "--model",
                &model,
                "--ip-adapter",
                &adapter,
                "--image-encoder",
                &model,
            ],
            "no `.safetensors` weights file",
        ),
        (
            vec!["--model", &model, "--dtype", "bf16"],
            "bf16 does not run on the CPU",
        ),
    ];
    for (args, expected) in cases {
        let (code, stderr) = failing(&args);
        let error_lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert_eq!(error_lines.len(), 1, "{args:?}: {stderr}");
        assert!(
            error_lines[0].contains(expected),
            "{args:?}: expected `{expected}` in {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// cubiq's options (#13) reach the run and the settings saved with it.
#[test]
fn the_method_flags_reach_the_saved_settings() {
    let scratch = temp_dir("cli-methods");
    let out = scratch.join("method.png");
    generate_ok(
        concat!(
            "--steps 2 --width 64 --height 64 --seed 4 --noise 0.3 --combine subtract ",
            "--weight-type ease-in --negative-weight-type weak-output ",
            "--embeds-scaling k-mean-v-c-penalty",
        ),
        "lawn.png",
        &out,
    );
    let bytes = std::fs::read(&out).expect("output");
    let request = minus::output::read_request(&bytes).expect("embedded settings");
    assert_eq!(request.noise, 0.3);
    assert_eq!(request.combine, minus::pipeline::Combine::Subtract);
    assert_eq!(request.weight_type, minus::pipeline::WeightType::EaseIn);
    assert_eq!(
        request.negative_weight_type,
        minus::pipeline::WeightType::WeakOutput
    );
    assert_eq!(
        request.embeds_scaling,
        minus::pipeline::EmbedsScaling::KMeanVCPenalty
    );
    let paths = model_paths(Some("ip-adapter_sd15.safetensors"));
    let model = paths.model.display().to_string();
    let (code, message) = failing(&["--model", &model, "--combine", "blend"]);
    assert_eq!(code, Some(2), "{message}");
    assert!(message.contains("norm-average"), "{message}");
}

/// A value clap parses but the run cannot use is a usage error, as a bad enum value
/// is: exit code 2, one error line, then the usage line (README: "a bad value is a
/// usage error").
#[test]
fn out_of_range_flags_are_usage_errors() {
    let paths = model_paths(Some("ip-adapter_sd15.safetensors"));
    let model = paths.model.display().to_string();
    let cases: [(&[&str], &str); 5] = [
        (&["--width", "100"], "multiple of 8"),
        (&["--steps", "0"], "steps must be"),
        (&["--noise", "1.5"], "noise"),
        (&["--ip-end", "2"], "image prompt end"),
        (
            &["--image", "a.png", "--image-weights", "1,2"],
            "--image-weights has 2 values for 1 images",
        ),
    ];
    for (flags, expected) in cases {
        let mut args = vec!["--model", model.as_str()];
        args.extend_from_slice(flags);
        let (code, stderr) = failing(&args);
        let error_lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert_eq!(error_lines.len(), 1, "{args:?}: {stderr}");
        assert!(error_lines[0].contains(expected), "{args:?}: {stderr}");
        assert!(
            stderr.contains("Usage: minus generate"),
            "{args:?}: {stderr}"
        );
    }
}

/// `--sampler` is the flag's name, as in the window and the settings; `--scheduler`
/// (diffusers' word) still works.
#[test]
fn the_sampler_flag_has_the_windows_name_and_the_old_one_as_alias() {
    let scratch = temp_dir("cli-sampler");
    for flag in ["--sampler", "--scheduler"] {
        let out = scratch.join(format!("{}.png", flag.trim_start_matches('-')));
        generate_ok(
            &format!("--steps 1 --width 64 --height 64 --seed 4 {flag} euler-a"),
            "lawn.png",
            &out,
        );
        let bytes = std::fs::read(&out).expect("output");
        let request = minus::output::read_request(&bytes).expect("embedded settings");
        assert_eq!(
            request.sampler,
            minus::schedulers::SamplerKind::EulerAncestral
        );
    }
}
