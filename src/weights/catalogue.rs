//! The default models (from `resources/catalogue.json`) and where they are in the hub cache.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::sync::atomic::AtomicBool;

use serde::Deserialize;

use super::ModelPaths;
use super::hub::{DownloadProgress, Hub};
use crate::models::family::ModelFamily;
use crate::{MinusError, Result};

const CATALOGUE: &str = include_str!("../../resources/catalogue.json");

/// What a catalogue entry provides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryKind {
    Model,
    Vae,
    ImageEncoder,
    IpAdapter,
    /// TAESD, the tiny decoder of the live previews.
    PreviewDecoder,
    /// A LoRA file (the few-step LoRAs of the Fast preset).
    Lora,
}

/// One downloadable model.
#[derive(Debug, Clone, Deserialize)]
pub struct CatalogueEntry {
    pub name: String,
    /// The short name the window shows (adapters: "Plus", "Full Face", ...).
    #[serde(default)]
    pub label: Option<String>,
    pub kind: EntryKind,
    pub repo: String,
    pub files: Vec<String>,
    /// Approximate download size, for display before the hub is asked.
    pub approx_mb: u64,
    /// The model family the entry belongs to (SD 1.5 when the catalogue says none).
    #[serde(default)]
    pub family: ModelFamily,
    /// An adapter's image encoder entry ([`IMAGE_ENCODER`], CLIP ViT-H, when none is named).
    #[serde(default)]
    pub image_encoder: Option<String>,
}

/// The models Minus can download: the first-run defaults and the other adapters.
#[derive(Debug, Clone, Deserialize)]
pub struct Catalogue {
    pub entries: Vec<CatalogueEntry>,
}

/// Catalogue name of the default SD 1.5 model.
pub const DEFAULT_MODEL: &str = "realistic-vision-v4";
/// Catalogue name of the default VAE.
pub const DEFAULT_VAE: &str = "sd-vae-ft-mse";
/// Catalogue name of the CLIP image encoder every h94 SD 1.5 adapter uses.
pub const IMAGE_ENCODER: &str = "image-encoder";
/// Catalogue name of the default (base) IP-Adapter.
pub const DEFAULT_ADAPTER: &str = "ip-adapter";

/// Catalogue name of TAESD, the previews' decoder.
pub const TAESD: &str = "taesd";
/// Catalogue name of TAESDXL, TAESD's twin for SDXL latents.
pub const TAESDXL: &str = "taesdxl";

/// The preview decoder made for `family`'s latents.
pub fn preview_decoder_for(family: ModelFamily) -> &'static str {
    match family {
        ModelFamily::Sd15 => TAESD,
        ModelFamily::Sdxl => TAESDXL,
    }
}

/// Catalogue name of TCD's SD 1.5 LoRA (`h1t/TCD-SD15-LoRA`), made for the TCD sampler.
pub const TCD_LORA: &str = "tcd-sd15-lora";
/// Catalogue name of Hyper-SD's 8-step SD 1.5 LoRA that keeps guidance (CFG 5-8) working.
pub const HYPER_SD_CFG_LORA: &str = "hyper-sd15-8steps-cfg-lora";

/// Entries a first run needs: model, VAE, image encoder, the base adapter and TAESD.
pub const FIRST_RUN: [&str; 5] = [
    DEFAULT_MODEL,
    DEFAULT_VAE,
    IMAGE_ENCODER,
    DEFAULT_ADAPTER,
    TAESD,
];

/// What `minus models download sdxl` and the window's SDXL button fetch.
pub const SDXL_SET_NAME: &str = "sdxl";

/// The entries a family's default setup is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultSet {
    pub model: &'static str,
    pub vae: &'static str,
    pub image_encoder: &'static str,
    pub adapter: &'static str,
    pub preview: &'static str,
}

impl DefaultSet {
    /// SD 1.5: Realistic Vision V4, sd-vae-ft-mse, ViT-H, the base adapter, TAESD.
    /// SDXL: SDXL base 1.0, the fp16-fix VAE (its own overflows in f16), ViT-H, the Plus
    /// ViT-H adapter, TAESDXL.
    pub fn of(family: ModelFamily) -> Self {
        match family {
            ModelFamily::Sd15 => Self {
                model: DEFAULT_MODEL,
                vae: DEFAULT_VAE,
                image_encoder: IMAGE_ENCODER,
                adapter: DEFAULT_ADAPTER,
                preview: TAESD,
            },
            ModelFamily::Sdxl => Self {
                model: "sdxl-base",
                vae: "sdxl-vae-fp16-fix",
                image_encoder: IMAGE_ENCODER,
                adapter: "ip-adapter-plus-sdxl-vit-h",
                preview: TAESDXL,
            },
        }
    }

    /// The entry names, in download order.
    pub fn names(&self) -> [&'static str; 5] {
        [
            self.model,
            self.vae,
            self.image_encoder,
            self.adapter,
            self.preview,
        ]
    }
}

/// The built-in catalogue, parsed the first time it is asked for.
static BUILT_IN: LazyLock<std::result::Result<Catalogue, String>> =
    LazyLock::new(|| serde_json::from_str(CATALOGUE).map_err(|e| e.to_string()));

impl Catalogue {
    /// The catalogue shipped with Minus (parsed once per process).
    pub fn built_in() -> Result<&'static Self> {
        BUILT_IN.as_ref().map_err(|message| MinusError::BadConfig {
            path: PathBuf::from("resources/catalogue.json"),
            message: message.clone(),
        })
    }

    /// An entry by name, or an error listing the names.
    pub fn get(&self, name: &str) -> Result<&CatalogueEntry> {
        self.entries.iter().find(|e| e.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.entries.iter().map(|e| e.name.as_str()).collect();
            MinusError::UnknownModel {
                name: name.to_string(),
                known: names.join(", "),
            }
        })
    }

    /// The IP-Adapters, in the order the window offers them.
    pub fn adapters(&self) -> impl Iterator<Item = &CatalogueEntry> {
        self.entries
            .iter()
            .filter(|e| e.kind == EntryKind::IpAdapter)
    }

    /// The IP-Adapters made for `family`'s models.
    pub fn adapters_for(&self, family: ModelFamily) -> impl Iterator<Item = &CatalogueEntry> {
        self.adapters().filter(move |e| e.family == family)
    }

    /// The LoRA files Minus can download (the few-step LoRAs).
    pub fn loras(&self) -> impl Iterator<Item = &CatalogueEntry> {
        self.entries.iter().filter(|e| e.kind == EntryKind::Lora)
    }

    /// The adapter entry whose file has the name of `path`'s, wherever it lives
    /// (the hub cache, a ComfyUI folder).
    pub fn adapter_for_file(&self, path: &Path) -> Option<&CatalogueEntry> {
        let name = path.file_name()?;
        self.adapters().find(|entry| {
            entry
                .files
                .first()
                .and_then(|file| Path::new(file).file_name())
                == Some(name)
        })
    }

    /// Model paths made of `set`'s cached entries; `None` if the model, VAE, adapter or
    /// image encoder is not fully downloaded. The preview decoder is added when it is
    /// cached (without it previews use the latent colour map).
    pub fn cached_model_paths(&self, hub: &Hub, set: DefaultSet) -> Option<ModelPaths> {
        let path = |name: &str| self.get(name).ok()?.cached_path(hub);
        Some(ModelPaths {
            model: path(set.model)?,
            vae: Some(path(set.vae)?),
            ip_adapter: Some(path(set.adapter)?),
            image_encoder: Some(path(set.image_encoder)?),
            taesd: path(set.preview),
            configs: None,
            loras: Vec::new(),
        })
    }

    /// Approximate size of `names` together, in MB.
    pub fn size_mb(&self, names: &[&str]) -> u64 {
        names
            .iter()
            .filter_map(|name| self.get(name).ok())
            .map(|entry| entry.approx_mb)
            .sum()
    }

    /// `names` with the set name `sdxl` replaced by the SDXL set's entries.
    pub fn expand_sets(names: &[String]) -> Vec<String> {
        names
            .iter()
            .flat_map(|name| {
                if name == SDXL_SET_NAME {
                    let set = DefaultSet::of(ModelFamily::Sdxl).names();
                    set.iter().map(|n| n.to_string()).collect()
                } else {
                    vec![name.clone()]
                }
            })
            .collect()
    }
}

impl CatalogueEntry {
    /// The catalogue name of the image encoder an adapter needs.
    pub fn image_encoder_name(&self) -> &str {
        self.image_encoder.as_deref().unwrap_or(IMAGE_ENCODER)
    }

    /// The label, or the name where the entry has none.
    pub fn display_name(&self) -> &str {
        self.label.as_deref().unwrap_or(&self.name)
    }

    /// The path Minus loads (a folder for models, VAEs and encoders; the file for
    /// adapters and LoRAs), if every file of the entry is in the cache.
    pub fn cached_path(&self, hub: &Hub) -> Option<PathBuf> {
        if !self
            .files
            .iter()
            .all(|f| hub.cached(&self.repo, f).is_some())
        {
            return None;
        }
        match self.kind {
            EntryKind::IpAdapter | EntryKind::Lora => hub.cached(&self.repo, self.files.first()?),
            // The folder of its files (`models/image_encoder`, `sdxl_models/image_encoder`).
            EntryKind::ImageEncoder => {
                let folder = Path::new(self.files.first()?).parent()?;
                Some(hub.snapshot_dir(&self.repo)?.join(folder))
            }
            EntryKind::Model | EntryKind::Vae | EntryKind::PreviewDecoder => {
                hub.snapshot_dir(&self.repo)
            }
        }
    }

    /// Downloads every missing file of the entry; `progress` gets the file name too.
    pub fn download(
        &self,
        hub: &Hub,
        progress: &mut dyn FnMut(&str, DownloadProgress),
        cancel: &AtomicBool,
    ) -> Result<PathBuf> {
        for file in &self.files {
            hub.fetch(&self.repo, file, &mut |p| progress(file, p), cancel)?;
        }
        self.cached_path(hub).ok_or_else(|| MinusError::Download {
            what: self.name.clone(),
            message: "files downloaded but not found in the cache".to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_catalogue_lists_the_defaults() -> Result<()> {
        let catalogue = Catalogue::built_in()?;
        for name in FIRST_RUN {
            catalogue.get(name)?;
        }
        let plus = catalogue.get("ip-adapter-plus")?;
        assert_eq!(plus.repo, "h94/IP-Adapter");
        assert_eq!(plus.files, ["models/ip-adapter-plus_sd15.safetensors"]);
        let unknown = catalogue.get("sd3");
        assert!(
            matches!(&unknown, Err(MinusError::UnknownModel { name, known })
                if name == "sd3" && known.contains("ip-adapter-plus")),
            "{unknown:?}"
        );
        let labels: Vec<&str> = catalogue
            .adapters_for(ModelFamily::Sd15)
            .map(CatalogueEntry::display_name)
            .collect();
        assert_eq!(
            labels,
            ["IP-Adapter", "Light", "Plus", "Plus Face", "Full Face"]
        );
        let found = catalogue.adapter_for_file(Path::new(
            "/ComfyUI/models/ipadapter/ip-adapter-plus_sd15.safetensors",
        ));
        assert_eq!(found.map(|e| e.name.as_str()), Some("ip-adapter-plus"));
        assert!(
            catalogue
                .adapter_for_file(Path::new("/x/mine.safetensors"))
                .is_none()
        );
        let taesd = catalogue.get(TAESD)?;
        assert_eq!(taesd.kind, EntryKind::PreviewDecoder);
        assert_eq!(taesd.repo, "madebyollin/taesd");
        Ok(())
    }

    #[test]
    fn the_sdxl_set_is_sdxl_models_with_the_encoders_their_adapters_need() -> Result<()> {
        let catalogue = Catalogue::built_in()?;
        let set = DefaultSet::of(ModelFamily::Sdxl);
        let kinds = [
            EntryKind::Model,
            EntryKind::Vae,
            EntryKind::ImageEncoder,
            EntryKind::IpAdapter,
            EntryKind::PreviewDecoder,
        ];
        for (name, kind) in set.names().into_iter().zip(kinds) {
            let entry = catalogue.get(name)?;
            assert_eq!(entry.kind, kind, "{name}");
            // The ViT-H encoder is shared with SD 1.5.
            assert!(
                entry.family == ModelFamily::Sdxl || name == IMAGE_ENCODER,
                "{name}"
            );
        }
        let labels: Vec<&str> = catalogue
            .adapters_for(ModelFamily::Sdxl)
            .map(CatalogueEntry::display_name)
            .collect();
        assert_eq!(
            labels,
            ["Plus", "IP-Adapter", "IP-Adapter bigG", "Plus Face"]
        );
        for adapter in catalogue.adapters() {
            let encoder = catalogue.get(adapter.image_encoder_name())?;
            assert_eq!(encoder.kind, EntryKind::ImageEncoder, "{}", adapter.name);
        }
        let big_g = catalogue.get("ip-adapter-sdxl")?;
        assert_eq!(big_g.image_encoder_name(), "image-encoder-bigg");
        let expanded = Catalogue::expand_sets(&["taesd".to_string(), "sdxl".to_string()]);
        assert_eq!(expanded.len(), 6);
        assert_eq!(expanded[1..], set.names().map(String::from));
        assert!(catalogue.size_mb(&set.names()) > 10_000);
        assert_eq!(preview_decoder_for(ModelFamily::Sdxl), TAESDXL);
        Ok(())
    }

    #[test]
    fn the_few_step_loras_are_listed_with_their_hub_files() -> Result<()> {
        let catalogue = Catalogue::built_in()?;
        let loras: Vec<(&str, &str, &str, u64)> = catalogue
            .loras()
            .map(|e| {
                (
                    e.name.as_str(),
                    e.repo.as_str(),
                    e.files[0].as_str(),
                    e.approx_mb,
                )
            })
            .collect();
        // Sizes as the hub lists them: 135 MB, and 269,127,064 bytes.
        assert_eq!(
            loras,
            [
                (
                    TCD_LORA,
                    "h1t/TCD-SD15-LoRA",
                    "pytorch_lora_weights.safetensors",
                    135
                ),
                (
                    HYPER_SD_CFG_LORA,
                    "ByteDance/Hyper-SD",
                    "Hyper-SD15-8steps-CFG-lora.safetensors",
                    269
                ),
            ]
        );
        assert!(catalogue.adapters().all(|e| e.kind != EntryKind::Lora));
        Ok(())
    }

    #[test]
    fn a_cached_lora_is_its_file() -> Result<()> {
        let cache = crate::scratch::ScratchDir::new("catalogue-lora");
        let commit = "0123456789abcdef0123456789abcdef01234567";
        let repo_dir = cache.join("models--h1t--TCD-SD15-LoRA");
        let snapshot = repo_dir.join("snapshots").join(commit);
        let hub = Hub::new("http://127.0.0.1:9", cache.to_path_buf());
        let entry = Catalogue::built_in()?.get(TCD_LORA)?;
        assert_eq!(entry.cached_path(&hub), None);
        std::fs::create_dir_all(&snapshot).map_err(|e| MinusError::io(&snapshot, e))?;
        std::fs::create_dir_all(repo_dir.join("refs")).map_err(|e| MinusError::io(&repo_dir, e))?;
        std::fs::write(repo_dir.join("refs/main"), commit)
            .map_err(|e| MinusError::io(&repo_dir, e))?;
        let file = snapshot.join("pytorch_lora_weights.safetensors");
        std::fs::write(&file, b"lora").map_err(|e| MinusError::io(&file, e))?;
        assert_eq!(entry.cached_path(&hub), Some(file));
        Ok(())
    }
}
