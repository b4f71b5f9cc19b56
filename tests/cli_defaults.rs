//! `minus generate` without `--model`, `--ip-adapter` or `--image-encoder`: the
//! catalogue's defaults from the download cache (here a stand-in cache holding the tiny
//! test models under the catalogue's repos and file names), one line per file used, and
//! one usage error naming `minus models download` when a default is not there.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{fixtures, model_paths, temp_dir};
use minus::weights::catalogue::Catalogue;

/// The commit the stand-in cache's `refs/main` names.
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// The fixture folder standing in for each catalogue repo's root (h94's `sdxl_models/`
/// are the tiny SDXL adapters; TAESDXL's stand-in is the tiny TAESD).
fn fixture_root(repo: &str, file: &str) -> PathBuf {
    let models = fixtures().join("models");
    match repo {
        "SG161222/Realistic_Vision_V4.0_noVAE" => models.join("sd15"),
        "stabilityai/sd-vae-ft-mse" => models.join("sd15/vae"),
        "madebyollin/taesd" | "madebyollin/taesdxl" => models.join("taesd"),
        "h94/IP-Adapter" if file.starts_with("sdxl_models/") => {
            fixtures().join("sdxl/models/ip-adapter")
        }
        "h94/IP-Adapter" => models.join("ip-adapter"),
        other => panic!("no stand-in for {other}"),
    }
}

/// A hub cache under `dir` holding the catalogue entries `names`, laid out as
/// `huggingface_hub` lays it out (`models--org--name/refs/main`, `snapshots/<commit>/`),
/// each file a copy of the tiny test model's.
fn stand_in_cache(dir: &Path, names: &[&str]) -> PathBuf {
    let cache = dir.join("hub");
    let catalogue = Catalogue::built_in().expect("catalogue");
    for name in names {
        let entry = catalogue.get(name).expect("entry");
        let repo_dir = cache.join(format!("models--{}", entry.repo.replace('/', "--")));
        std::fs::create_dir_all(repo_dir.join("refs")).expect("refs");
        std::fs::write(repo_dir.join("refs/main"), COMMIT).expect("ref");
        for file in &entry.files {
            let to = repo_dir.join("snapshots").join(COMMIT).join(file);
            std::fs::create_dir_all(to.parent().expect("folder")).expect("snapshot");
            std::fs::copy(fixture_root(&entry.repo, file).join(file), &to).expect("copy");
        }
    }
    cache
}

/// `minus generate` on the CPU, 64×64, 1 step, seed 5, with the hub cache at `cache`,
/// writing `out`, with the house as image prompt and the lawn as negative when `images`,
/// then `args`.
fn generate(cache: &Path, out: &Path, images: bool, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_minus"));
    command
        .env("HF_HUB_CACHE", cache)
        .args([
            "generate", "--device", "cpu", "--width", "64", "--height", "64",
        ])
        .args(["--steps", "1", "--seed", "5", "--output"])
        .arg(out);
    if images {
        command
            .arg("--image")
            .arg(fixtures().join("images/house.png"))
            .arg("--negative-image")
            .arg(fixtures().join("images/lawn.png"));
    }
    command.args(args).output().expect("minus runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The `<label>: <path> (default from the download cache)` lines, as (label, path).
fn default_lines(output: &Output) -> Vec<(String, String)> {
    stderr(output)
        .lines()
        .filter_map(|line| line.strip_suffix(" (default from the download cache)"))
        .filter_map(|line| line.split_once(": "))
        .map(|(label, path)| (label.to_string(), path.to_string()))
        .collect()
}

/// The snapshot path of `file` in `repo` of the stand-in cache.
fn snapshot(cache: &Path, repo: &str, file: &str) -> String {
    let repo_dir = cache.join(format!("models--{}", repo.replace('/', "--")));
    repo_dir
        .join("snapshots")
        .join(COMMIT)
        .join(file)
        .display()
        .to_string()
}

fn decoded(path: &Path) -> image::RgbImage {
    image::open(path).expect("output image").to_rgb8()
}

#[test]
fn generate_runs_on_the_cached_defaults_and_names_each_file() {
    let scratch = temp_dir("cli-defaults");
    let names = [
        "realistic-vision-v4",
        "sd-vae-ft-mse",
        "image-encoder",
        "ip-adapter",
    ];
    let cache = stand_in_cache(&scratch, &names);
    let out = scratch.join("o.png");
    let output = generate(&cache, &out, true, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let rv = "SG161222/Realistic_Vision_V4.0_noVAE";
    let h94 = "h94/IP-Adapter";
    let expected = [
        ("model", snapshot(&cache, rv, "")),
        ("VAE", snapshot(&cache, "stabilityai/sd-vae-ft-mse", "")),
        (
            "IP-Adapter",
            snapshot(&cache, h94, "models/ip-adapter_sd15.safetensors"),
        ),
        (
            "image encoder",
            snapshot(&cache, h94, "models/image_encoder"),
        ),
    ];
    let expected: Vec<(String, String)> = expected
        .into_iter()
        .map(|(label, path)| (label.to_string(), path.trim_end_matches('/').to_string()))
        .collect();
    assert_eq!(default_lines(&output), expected, "{}", stderr(&output));
    // The same picture as with every file named by its flag.
    let paths = model_paths(Some("ip-adapter_sd15.safetensors"));
    let named = scratch.join("named.png");
    let flags = [
        ("--model", paths.model.clone()),
        ("--vae", paths.model.join("vae")),
        ("--ip-adapter", paths.ip_adapter.clone().expect("adapter")),
        (
            "--image-encoder",
            paths.image_encoder.clone().expect("encoder"),
        ),
    ];
    let args: Vec<String> = flags
        .into_iter()
        .flat_map(|(flag, path)| [flag.to_string(), path.display().to_string()])
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = generate(&scratch.join("empty-hub"), &named, true, &args);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(default_lines(&output).is_empty(), "{}", stderr(&output));
    assert_eq!(decoded(&out), decoded(&named));
    // Saved results name the cached model by its repository, not its commit.
    let bytes = std::fs::read(&out).expect("output");
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.contains("Model: Realistic_Vision_V4.0_noVAE,"),
        "model name"
    );
}

#[test]
fn only_what_the_run_needs_is_taken_from_the_cache() {
    let scratch = temp_dir("cli-defaults-needs");
    let cache = stand_in_cache(&scratch, &["realistic-vision-v4", "sd-vae-ft-mse", "taesd"]);
    let out = scratch.join("text.png");
    // Text only, with a TAESD decode: no adapter is asked for, TAESD is.
    let output = generate(&cache, &out, false, &["--decode", "taesd"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let labels: Vec<String> = default_lines(&output).into_iter().map(|(l, _)| l).collect();
    assert_eq!(labels, ["model", "VAE", "TAESD"], "{}", stderr(&output));
    // A model of one's own keeps its own VAE: only the adapter files come from the cache.
    let cache = stand_in_cache(&scratch, &["image-encoder", "ip-adapter"]);
    let model = model_paths(None).model.display().to_string();
    let output = generate(&cache, &out, true, &["--model", &model]);
    assert!(output.status.success(), "{}", stderr(&output));
    let labels: Vec<String> = default_lines(&output).into_iter().map(|(l, _)| l).collect();
    assert_eq!(
        labels,
        ["IP-Adapter", "image encoder"],
        "{}",
        stderr(&output)
    );
}

/// The one `error:` line of a usage error (exit code 2, the usage line after it).
fn usage_error(output: &Output) -> String {
    let message = stderr(output);
    let errors: Vec<&str> = message
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(output.status.code(), Some(2), "{message}");
    assert_eq!(errors.len(), 1, "{message}");
    assert!(message.contains("Usage: minus generate"), "{message}");
    errors[0].to_string()
}

#[test]
fn missing_defaults_are_one_usage_error_naming_the_download() {
    let scratch = temp_dir("cli-defaults-missing");
    let empty = scratch.join("empty-hub");
    let out = scratch.join("x.png");
    let output = generate(&empty, &out, true, &[]);
    let error = usage_error(&output);
    assert!(
        error.contains(
            "run `minus models download realistic-vision-v4 sd-vae-ft-mse ip-adapter \
             image-encoder` or give --model, --vae, --ip-adapter, --image-encoder"
        ),
        "{error}"
    );
    assert!(error.contains(&empty.display().to_string()), "{error}");
    // Only the adapter missing: its download is named, and nothing else.
    let cache = stand_in_cache(
        &scratch,
        &["realistic-vision-v4", "sd-vae-ft-mse", "image-encoder"],
    );
    let house = fixtures().join("images/house.png").display().to_string();
    let output = generate(&cache, &out, false, &["--image", &house]);
    let error = usage_error(&output);
    assert!(
        error.contains(
            "no --ip-adapter given, and the default (ip-adapter) is not in the download \
             cache"
        ),
        "{error}"
    );
    assert!(
        error.contains("run `minus models download ip-adapter` or give --ip-adapter"),
        "{error}"
    );
    assert!(
        default_lines(&output).is_empty(),
        "said it used files it did not"
    );
    // A TAESD decode without TAESD: its download is named.
    let error = usage_error(&generate(&cache, &out, false, &["--decode", "taesd"]));
    assert!(
        error.contains("run `minus models download taesd` or give --taesd"),
        "{error}"
    );
    assert!(!out.exists());
}

/// The few-step LoRAs download like the adapters: into the hub cache, then listed present.
#[test]
fn the_few_step_loras_download_with_minus_models_download() {
    use common::stand_in_hub::StandInHub;
    let scratch = temp_dir("cli-models-loras");
    let file = fixtures().join("lora/kohya.safetensors");
    let bytes = std::fs::read(&file).expect("LoRA fixture");
    let served = std::collections::HashMap::from([
        (
            "h1t/TCD-SD15-LoRA/pytorch_lora_weights.safetensors".to_string(),
            bytes.clone(),
        ),
        (
            "ByteDance/Hyper-SD/Hyper-SD15-8steps-CFG-lora.safetensors".to_string(),
            bytes.clone(),
        ),
    ]);
    let hub = StandInHub::start(served, 0);
    let cache = scratch.join("hub");
    let minus = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_minus"))
            .env("HF_HUB_CACHE", &cache)
            .env("HF_ENDPOINT", &hub.endpoint)
            .arg("models")
            .args(args)
            .output()
            .expect("minus runs")
    };
    let names = ["tcd-sd15-lora", "hyper-sd15-8steps-cfg-lora"];
    let listed = minus(&["list"]);
    let listing = String::from_utf8_lossy(&listed.stdout).into_owned();
    for name in names {
        let line = listing
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_default();
        assert!(line.contains("missing"), "{listing}");
    }
    assert!(
        listing.contains("h1t/TCD-SD15-LoRA (about 135 MB)"),
        "{listing}"
    );
    assert!(
        listing.contains("ByteDance/Hyper-SD (about 269 MB)"),
        "{listing}"
    );
    let output = minus(&["download", names[0], names[1]]);
    assert!(output.status.success(), "{}", stderr(&output));
    let tcd = snapshot(
        &cache,
        "h1t/TCD-SD15-LoRA",
        "pytorch_lora_weights.safetensors",
    );
    assert_eq!(std::fs::read(&tcd).expect("downloaded"), bytes);
    let listing = String::from_utf8_lossy(&minus(&["list"]).stdout).into_owned();
    for name in names {
        let line = listing
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_default();
        assert!(line.contains("present"), "{listing}");
    }
    assert!(listing.contains(&tcd), "{listing}");
}

#[test]
fn an_sdxl_model_takes_sdxl_defaults_and_the_encoder_its_adapter_needs() {
    let scratch = temp_dir("cli-defaults-sdxl");
    let cache = stand_in_cache(
        &scratch,
        &["ip-adapter-sdxl", "image-encoder-bigg", "taesdxl"],
    );
    let out = scratch.join("x.png");
    let sdxl = fixtures().join("sdxl/models/sdxl");
    let adapter = snapshot(
        &cache,
        "h94/IP-Adapter",
        "sdxl_models/ip-adapter_sdxl.safetensors",
    );
    let model_args = ["--model", sdxl.to_str().expect("path")];
    let args = [
        &model_args[..],
        &["--ip-adapter", &adapter, "--decode", "taesd"],
    ]
    .concat();
    let output = generate(&cache, &out, true, &args);
    assert!(output.status.success(), "{}", stderr(&output));
    let lines = default_lines(&output);
    let encoder = snapshot(&cache, "h94/IP-Adapter", "sdxl_models/image_encoder");
    let taesdxl = snapshot(&cache, "madebyollin/taesdxl", "");
    assert!(
        lines.contains(&("image encoder".to_string(), encoder)),
        "{lines:?}"
    );
    let taesd = lines
        .iter()
        .find(|(label, _)| label == "TAESD")
        .expect("TAESD line");
    assert!(
        taesdxl.starts_with(taesd.1.trim_end_matches('/')),
        "{lines:?}"
    );
    // Without an adapter, SDXL's default one is asked for.
    let empty = scratch.join("empty-hub");
    let error = usage_error(&generate(&empty, &out, true, &model_args));
    assert!(
        error.contains("minus models download ip-adapter-plus-sdxl-vit-h image-encoder"),
        "{error}"
    );
}
