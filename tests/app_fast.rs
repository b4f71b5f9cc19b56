//! UI tests of the Fast button: it sets TCD, its steps, a CFG that keeps the negative
//! image acting and the TAESD final decode, and puts the catalogue's TCD LoRA in the
//! LoRA list once (from the download cache, or downloaded from a stand-in hub first).

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::stand_in_hub::{Behaviour, COMMIT, StandInHub};
use common::ui::{State, app, app_mut, assert_no_messages, harness, run_until, test_settings};
use common::{fixtures, temp_dir};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use minus::app::MinusApp;
use minus::pipeline::FinalDecode;
use minus::pipeline::fast_preset::{FAST_CFG, FAST_STEPS};
use minus::schedulers::SamplerKind;
use minus::weights::catalogue::{Catalogue, TCD_LORA};
use minus::weights::hub::Hub;
use minus::weights::lora::LoraChoice;

/// The negative pane's mark while CFG leaves the negative images nothing to do.
const MARK: &str = "needs CFG > 1";
/// TAESD's files, as the fixture holds them and the hub serves them.
const TAESD_REPO: &str = "madebyollin/taesd";
const TAESD_FILES: [&str; 2] = ["config.json", "diffusion_pytorch_model.safetensors"];

/// The TCD LoRA's repo and file, as the catalogue names them.
fn tcd_repo_file() -> (String, String) {
    let entry = Catalogue::built_in()
        .and_then(|c| c.get(TCD_LORA))
        .expect("the catalogue lists the TCD LoRA");
    (entry.repo.clone(), entry.files[0].clone())
}

/// A tiny LoRA for the test model, standing in for the TCD LoRA.
fn tiny_lora() -> PathBuf {
    fixtures().join("lora/kohya.safetensors")
}

/// Puts `files` (name in the repo, where to copy it from) into `cache` as the hub's
/// cache holds `repo` at its main revision; returns where each landed.
fn put_in_hub_cache(cache: &Path, repo: &str, files: &[(&str, PathBuf)]) -> Vec<PathBuf> {
    let repo_dir = cache.join(format!("models--{}", repo.replace('/', "--")));
    std::fs::create_dir_all(repo_dir.join("refs")).expect("refs folder");
    std::fs::write(repo_dir.join("refs/main"), COMMIT).expect("refs/main");
    let snapshot = repo_dir.join("snapshots").join(COMMIT);
    files
        .iter()
        .map(|(name, source)| {
            let path = snapshot.join(name);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("snapshot folder");
            std::fs::copy(source, &path).expect("copy into the cache");
            path
        })
        .collect()
}

/// The LoRAs the engine reports loaded, by name and strength.
fn loaded_loras(app: &MinusApp) -> Option<Vec<(String, f64)>> {
    app.loaded_models().map(|m| m.loras.clone())
}

/// The models are loaded with the TCD LoRA (named after its repository) at strength 1 and
/// with TAESD.
fn loaded_with_tcd(app: &MinusApp) -> bool {
    let tcd = ("TCD-SD15-LoRA".to_string(), 1.0);
    loaded_loras(app) == Some(vec![tcd]) && app.loaded_models().is_some_and(|m| m.taesd)
}

/// A window on `out`'s test settings at CFG 1, with its hub at `hub`, once the
/// first models are loaded.
fn window_with_hub(out: &Path, hub: Hub) -> Harness<'static, State> {
    let mut settings = test_settings(out);
    settings.request.cfg = 1.0;
    let mut harness = harness(settings);
    harness.step();
    app_mut(&mut harness).set_hub(hub);
    run_until(&mut harness, "the first models", |app| {
        app.loaded_models().is_some()
    });
    harness
}

/// Asserts the settings the preset sets, and that the negative pane is not marked.
fn assert_preset_set(harness: &Harness<'_, State>) {
    let request = app(harness).settings().request;
    assert_eq!(
        (
            request.sampler,
            request.steps,
            request.cfg,
            request.final_decode
        ),
        (SamplerKind::Tcd, FAST_STEPS, FAST_CFG, FinalDecode::Taesd)
    );
    assert!(harness.query_by_label(MARK).is_none(), "marked at CFG 2");
}

#[test]
fn fast_sets_its_controls_and_loads_the_cached_tcd_lora_once() {
    let out = temp_dir("ui-fast-cached");
    let cache = out.join("hub-cache");
    let (repo, file) = tcd_repo_file();
    let lora = put_in_hub_cache(&cache, &repo, &[(&file, tiny_lora())]).remove(0);
    let taesd: Vec<_> = TAESD_FILES
        .iter()
        .map(|f| (*f, fixtures().join("models/taesd").join(f)))
        .collect();
    put_in_hub_cache(&cache, TAESD_REPO, &taesd);
    // Nothing answers on this port: the test fails if anything is downloaded.
    let mut harness = window_with_hub(&out, Hub::new("http://127.0.0.1:9", cache));
    assert!(
        harness.query_by_label(MARK).is_some(),
        "not marked at CFG 1"
    );

    harness.get_by_label("Fast").click();
    run_until(
        &mut harness,
        "the models with the TCD LoRA",
        loaded_with_tcd,
    );
    assert_preset_set(&harness);
    let chosen = [LoraChoice::new(&lora, 1.0)];
    assert_eq!(app(&harness).settings().models.paths.loras, chosen);

    harness.get_by_label("Fast").click();
    harness.run_steps(3);
    assert_eq!(app(&harness).settings().models.paths.loras, chosen);
    assert!(!app(&harness).is_downloading());
    assert_no_messages(&harness);

    // The preset runs: TCD's steps with the LoRA merged, decoded by TAESD.
    harness.get_by_label("Generate").click();
    run_until(&mut harness, "the Fast picture", |app| {
        app.gallery_len() == 1
    });
    assert_no_messages(&harness);
}

#[test]
fn fast_downloads_the_tcd_lora_and_taesd_then_loads_them() {
    let (repo, file) = tcd_repo_file();
    let read = |path: PathBuf| std::fs::read(path).expect("fixture");
    let mut served: HashMap<String, Vec<u8>> =
        HashMap::from([(format!("{repo}/{file}"), read(tiny_lora()))]);
    for name in TAESD_FILES {
        let bytes = read(fixtures().join("models/taesd").join(name));
        served.insert(format!("{TAESD_REPO}/{name}"), bytes);
    }
    let server = StandInHub::start(served, 0);
    let out = temp_dir("ui-fast-download");
    let cache = out.join("hub-cache");
    let mut harness = window_with_hub(&out, Hub::new(&server.endpoint, &cache));

    harness.get_by_label("Fast").hover();
    harness.run_steps(30);
    let sizes = "Downloads first: the TCD LoRA (about 135 MB) and TAESD (about 10 MB).";
    assert!(
        harness.query_by_label_contains(sizes).is_some(),
        "the tooltip names what it downloads"
    );

    harness.get_by_label("Fast").click();
    harness.step();
    assert!(app(&harness).is_downloading());
    run_until(&mut harness, "the downloaded TCD LoRA", loaded_with_tcd);
    assert_preset_set(&harness);
    let lora = Hub::new(&server.endpoint, &cache).cached(&repo, &file);
    assert!(lora.is_some(), "the TCD LoRA is not in the cache");
    let loras = app(&harness).settings().models.paths.loras;
    assert_eq!(loras, [LoraChoice::new(lora.expect("cached"), 1.0)]);
    assert_no_messages(&harness);
}

/// A window whose hub takes connections and never answers, so a download runs
/// until the test ends.
fn window_with_silent_hub(name: &str) -> (Harness<'static, State>, StandInHub) {
    let behaviour = Behaviour {
        silent: true,
        ..Behaviour::default()
    };
    let server = StandInHub::start_with(HashMap::new(), behaviour);
    let out = temp_dir(name);
    let harness = window_with_hub(&out, Hub::new(&server.endpoint, out.join("hub-cache")));
    (harness, server)
}

#[test]
fn fast_during_another_download_says_what_it_could_not_download() {
    let (mut harness, _server) = window_with_silent_hub("ui-fast-busy");
    app_mut(&mut harness).download_defaults();
    // Its progress bar moves the button down.
    harness.step();
    harness.get_by_label("Fast").click();
    harness.run_steps(2);
    assert_preset_set(&harness);
    let texts: Vec<String> = app(&harness)
        .messages()
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(
        texts,
        [
            "Another download is running: press Fast again once it ends, to download the \
          TCD LoRA (about 135 MB) and TAESD (about 10 MB)"
        ]
    );
}

#[test]
fn fast_pressed_again_while_its_download_runs_starts_nothing_new() {
    let (mut harness, _server) = window_with_silent_hub("ui-fast-twice");
    harness.get_by_label("Fast").click();
    harness.run_steps(2);
    assert!(app(&harness).is_downloading());
    harness.get_by_label("Fast").click();
    harness.run_steps(2);
    assert!(app(&harness).is_downloading());
    assert_no_messages(&harness);
    assert!(app(&harness).settings().models.paths.loras.is_empty());
}
