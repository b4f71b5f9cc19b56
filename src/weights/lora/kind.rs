//! What a LoRA file holds, read off its tensor names: the LoRA and LoCon layers Minus
//! merges (kohya's `lora_down`/`lora_up`/`alpha`, PEFT's `lora_A`/`lora_B`), and the
//! other kinds it refuses by name rather than apply half of a file.

use std::path::Path;

use crate::{MinusError, Result};

/// One tensor of a LoRA layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// `[rank, in]`, or `[rank, in, k, k]` for a convolution.
    Down,
    /// `[out, rank]`, or `[out, rank, 1, 1]`.
    Up,
    /// The scalar the layer's change is scaled by, over its rank.
    Alpha,
}

impl Part {
    /// Where the part sits in a layer's `[down, up, alpha]`.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Name endings of the parts: kohya's, PEFT's, and older diffusers files'.
const PART_SUFFIXES: [(&str, Part); 7] = [
    (".lora_down.weight", Part::Down),
    (".lora_up.weight", Part::Up),
    (".lora_A.weight", Part::Down),
    (".lora_B.weight", Part::Up),
    (".lora.down.weight", Part::Down),
    (".lora.up.weight", Part::Up),
    (".alpha", Part::Alpha),
];

/// Splits a tensor name into its layer's module name and the part, `None` for a
/// tensor that is no part of a LoRA layer.
pub fn split_key(key: &str) -> Option<(&str, Part)> {
    PART_SUFFIXES
        .iter()
        .find_map(|(suffix, part)| Some((key.strip_suffix(suffix)?, *part)))
}

/// Pieces of tensor names that only the kinds Minus does not merge have, with the
/// kind's name (LyCORIS' names for its algorithms).
const UNSUPPORTED_KINDS: [(&str, &str); 17] = [
    (".hada_w1", "LoHa"),
    (".hada_t1", "LoHa"),
    (".lokr_w1", "LoKr"),
    (".lokr_w2", "LoKr"),
    (".lokr_t2", "LoKr"),
    (".oft_blocks", "OFT"),
    (".oft_diag", "OFT"),
    (".oft_r", "OFT"),
    (".boft_", "BOFT"),
    (".on_input", "(IA)³"),
    (".w_norm", "a LyCORIS norm layer"),
    (".b_norm", "a LyCORIS norm layer"),
    (".a1.weight", "GLoRA"),
    (".dora_scale", "DoRA"),
    (".lora_magnitude_vector", "DoRA"),
    (".lora_mid.", "LoCon with a CP (Tucker) decomposition"),
    (".lora_B.bias", "a LoRA with biases"),
];

/// Prefixes of networks neither SD 1.5 nor SDXL has.
const OTHER_FAMILIES: [(&str, &str); 2] = [
    (
        "lora_transformer_",
        "a LoRA for a transformer model (Flux, SD3...)",
    ),
    (
        "transformer.",
        "a LoRA for a transformer model (Flux, SD3...)",
    ),
];

/// Prefixes only LoRAs made for SDXL have: its two text encoders' (kohya's `lora_te1_`
/// and `lora_te2_`, diffusers' `text_encoder_2.`).
const SDXL_PREFIXES: [&str; 3] = ["lora_te1_", "lora_te2_", "text_encoder_2."];

/// Whether a LoRA tensor name says its file was made for SDXL.
pub fn is_sdxl_key(key: &str) -> bool {
    SDXL_PREFIXES.iter().any(|prefix| key.starts_with(prefix))
}

/// The refusal of a LoRA made for SDXL on an SD 1.5 model.
pub fn sdxl_lora_on_sd15(path: &Path) -> MinusError {
    MinusError::BadWeights {
        path: path.to_path_buf(),
        message: "this is an SDXL LoRA; Minus needs LoRAs made for SD 1.5".to_string(),
    }
}

/// Refuses a file whose tensors belong to a kind Minus does not merge, or to a model
/// family other than SD 1.5 and SDXL, naming the kind.
pub fn refuse_unsupported<'a>(path: &Path, keys: impl IntoIterator<Item = &'a str>) -> Result<()> {
    let refuse = |message: String| {
        Err(MinusError::BadWeights {
            path: path.to_path_buf(),
            message,
        })
    };
    for key in keys {
        if let Some((_, kind)) = UNSUPPORTED_KINDS
            .iter()
            .find(|(piece, _)| key.contains(piece))
        {
            return refuse(format!(
                "{kind} is not supported yet (Minus merges LoRA and LoCon files)"
            ));
        }
        if key.ends_with(".diff") || key.ends_with(".diff_b") {
            return refuse(
                "a full-weight difference (LyCORIS \"full\") is not supported yet (Minus merges LoRA and LoCon files)"
                    .to_string(),
            );
        }
        if let Some((_, family)) = OTHER_FAMILIES.iter().find(|(p, _)| key.starts_with(p)) {
            return refuse(format!(
                "this is {family}; Minus needs LoRAs made for SD 1.5"
            ));
        }
    }
    Ok(())
}

/// Refuses LoRA files that are not safetensors: pickles (`.pt`, `.ckpt`, `.bin`) can run
/// code when read, and LoRAs are shared as safetensors.
pub fn refuse_pickles(path: &Path) -> Result<()> {
    let is_safetensors = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
    if is_safetensors {
        return Ok(());
    }
    Err(MinusError::Refused {
        path: path.to_path_buf(),
        message:
            "LoRA files are read as .safetensors only (pickled .pt/.ckpt/.bin files are not loaded)"
                .to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_naming_splits_into_module_and_part() {
        let cases = [
            (
                "lora_unet_a_b.lora_down.weight",
                "lora_unet_a_b",
                Part::Down,
            ),
            ("lora_te_x.lora_up.weight", "lora_te_x", Part::Up),
            ("lora_unet_a_b.alpha", "lora_unet_a_b", Part::Alpha),
            ("unet.a.to_q.lora_A.weight", "unet.a.to_q", Part::Down),
            (
                "text_encoder.a.q_proj.lora_B.weight",
                "text_encoder.a.q_proj",
                Part::Up,
            ),
            ("unet.a.to_q.lora.down.weight", "unet.a.to_q", Part::Down),
        ];
        for (key, module, part) in cases {
            assert_eq!(split_key(key), Some((module, part)), "{key}");
        }
        assert_eq!(split_key("lora_unet_a.hada_w1_a"), None);
    }

    #[test]
    fn lycoris_kinds_and_other_families_are_refused_by_name() {
        let cases = [
            ("lora_unet_a.hada_w1_a", "LoHa is not supported yet"),
            ("lora_unet_a.lokr_w1", "LoKr is not supported yet"),
            ("lora_unet_a.diff", "full-weight difference"),
            ("lora_unet_a.oft_blocks", "OFT is not supported yet"),
            ("lora_unet_a.dora_scale", "DoRA is not supported yet"),
            ("lora_unet_a.lora_mid.weight", "CP (Tucker)"),
            ("lora_transformer_a.lora_down.weight", "transformer model"),
        ];
        for (key, expected) in cases {
            let message = refuse_unsupported(Path::new("/l/x.safetensors"), [key])
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                message.contains("/l/x.safetensors") && message.contains(expected),
                "{key}: {message}"
            );
        }
        let plain = ["lora_unet_a.lora_down.weight", "unet.b.lora_A.weight"];
        assert!(refuse_unsupported(Path::new("x"), plain).is_ok());
        let sdxl = [
            "lora_te2_a.lora_down.weight",
            "text_encoder_2.a.lora_A.weight",
        ];
        assert!(refuse_unsupported(Path::new("x"), sdxl).is_ok());
        assert!(sdxl.iter().all(|key| is_sdxl_key(key)) && !plain.iter().any(|k| is_sdxl_key(k)));
        let message = sdxl_lora_on_sd15(Path::new("/l/x.safetensors")).to_string();
        assert!(message.contains("/l/x.safetensors") && message.contains("SDXL LoRA"));
    }

    #[test]
    fn only_safetensors_files_are_read() {
        for name in ["a.pt", "a.ckpt", "a.bin", "a"] {
            let refused = refuse_pickles(Path::new(name));
            assert!(
                matches!(&refused, Err(MinusError::Refused { path, .. }) if path == Path::new(name)),
                "{name}: {refused:?}"
            );
        }
        assert!(refuse_pickles(Path::new("a.SafeTensors")).is_ok());
    }
}
