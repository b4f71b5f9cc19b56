//! The model files `minus generate` takes from the download cache when no flag names
//! them: the catalogue's defaults, as the window uses them after its first download.

use std::path::PathBuf;

use minus::models::family::ModelFamily;
use minus::weights::ModelPaths;
use minus::weights::catalogue::{Catalogue, DefaultSet};
use minus::weights::family::peek_family;
use minus::weights::hub::Hub;

use super::UsageError;

/// What the run needs beyond the model, so that nothing unused is asked of the cache.
#[derive(Debug, Clone, Copy)]
pub struct Needs {
    /// Image prompts are on: an IP-Adapter and its image encoder.
    pub image_prompts: bool,
    /// The final picture is decoded by TAESD.
    pub taesd: bool,
}

/// One path the flags left out, and the catalogue entry that fills it.
struct Slot<'a> {
    /// How the line names the file (`model: ...`).
    label: &'static str,
    /// The flag that would have named it.
    flag: &'static str,
    entry: &'static str,
    path: &'a mut Option<PathBuf>,
}

/// Fills every path of `paths` the flags left out and the run needs from the cached
/// catalogue defaults of the model's family (SD 1.5's without `--model`), printing one
/// line per file taken. An adapter from the catalogue takes the encoder made for it.
/// Defaults that are not in the cache are one usage error naming them and
/// `minus models download`.
pub fn fill_from_cache(paths: &mut ModelPaths, needs: Needs, hub: &Hub) -> anyhow::Result<()> {
    let catalogue = Catalogue::built_in()?;
    // The default model comes without a VAE of its own ("noVAE"): it takes the default's.
    let default_model = !paths.is_set();
    let family = if default_model {
        ModelFamily::Sd15
    } else {
        peek_family(&paths.model)
    };
    let set = DefaultSet::of(family);
    let encoder = paths
        .ip_adapter
        .as_deref()
        .and_then(|adapter| catalogue.adapter_for_file(adapter))
        .map_or(set.image_encoder, |entry| entry.image_encoder_name());
    let mut model = None;
    let wanted = [
        (default_model, "model", "--model", set.model, &mut model),
        (default_model, "VAE", "--vae", set.vae, &mut paths.vae),
        (
            needs.image_prompts,
            "IP-Adapter",
            "--ip-adapter",
            set.adapter,
            &mut paths.ip_adapter,
        ),
        (
            needs.image_prompts,
            "image encoder",
            "--image-encoder",
            encoder,
            &mut paths.image_encoder,
        ),
        (
            needs.taesd,
            "TAESD",
            "--taesd",
            set.preview,
            &mut paths.taesd,
        ),
    ];
    let slots = wanted
        .into_iter()
        .filter(|(needed, .., path)| *needed && path.is_none())
        .map(|(_, label, flag, entry, path)| Slot {
            label,
            flag,
            entry,
            path,
        })
        .collect();
    fill(catalogue, hub, slots)?;
    if let Some(path) = model {
        paths.model = path;
    }
    Ok(())
}

/// Fills each slot from the cache and says so, or fails naming every missing entry.
fn fill(catalogue: &Catalogue, hub: &Hub, slots: Vec<Slot>) -> anyhow::Result<()> {
    let mut missing: Vec<(&str, &str)> = Vec::new();
    let mut found = Vec::new();
    for slot in slots {
        match catalogue.get(slot.entry)?.cached_path(hub) {
            Some(path) => found.push((slot, path)),
            None => missing.push((slot.flag, slot.entry)),
        }
    }
    if !missing.is_empty() {
        let flags: Vec<&str> = missing.iter().map(|(flag, _)| *flag).collect();
        let names: Vec<&str> = missing.iter().map(|(_, name)| *name).collect();
        let (defaults, are) = if missing.len() == 1 {
            ("the default", "is")
        } else {
            ("the defaults", "are")
        };
        let message = format!(
            "no {flags} given, and {defaults} ({}) {are} not in the download cache ({}): run \
             `minus models download {}` or give {flags}",
            names.join(", "),
            hub.cache_dir().display(),
            names.join(" "),
            flags = flags.join(", "),
        );
        return Err(UsageError(message).into());
    }
    for (slot, path) in found {
        eprintln!(
            "{}: {} (default from the download cache)",
            slot.label,
            path.display()
        );
        *slot.path = Some(path);
    }
    Ok(())
}
