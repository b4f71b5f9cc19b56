//! The scales of a diffusers/PEFT LoRA, which keeps its alpha in the file's metadata
//! (`lora_adapter_metadata`, a `LoraConfig` per network, keys `unet.lora_alpha`,
//! `text_encoder.alpha_pattern`...) instead of in `.alpha` tensors.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::names::Network;

/// The metadata key diffusers' `save_lora_weights` writes the configs under.
const METADATA_KEY: &str = "lora_adapter_metadata";

/// One network's `LoraConfig` as far as the scale goes.
#[derive(Debug, Default)]
struct NetworkScale {
    alpha: Option<f64>,
    /// (module name or the end of one, alpha) for the layers whose alpha differs.
    alpha_pattern: Vec<(String, f64)>,
    /// rsLoRA scales by alpha/√rank instead of alpha/rank.
    rank_stabilized: bool,
}

/// The scales the file's metadata gives each network's layers; without metadata a
/// layer's scale is 1 (alpha = rank, PEFT's and diffusers' default for such files).
#[derive(Debug, Default)]
pub struct PeftScales {
    unet: NetworkScale,
    text_encoder: NetworkScale,
    text_encoder_2: NetworkScale,
}

impl PeftScales {
    /// Reads the adapter configs out of a safetensors header's metadata.
    pub fn from_metadata(metadata: &HashMap<String, String>) -> Result<Self, String> {
        let Some(text) = metadata.get(METADATA_KEY) else {
            return Ok(Self::default());
        };
        let config: Map<String, Value> = serde_json::from_str(text)
            .map_err(|e| format!("its `{METADATA_KEY}` is not a JSON object ({e})"))?;
        Ok(Self {
            unet: NetworkScale::read(&config, "unet")?,
            text_encoder: NetworkScale::read(&config, "text_encoder")?,
            text_encoder_2: NetworkScale::read(&config, "text_encoder_2")?,
        })
    }

    /// The scale of layer `module` (without the network prefix) of `rank` on `network`.
    pub fn scale(&self, network: Network, module: &str, rank: usize) -> f64 {
        let config = match network {
            Network::Unet => &self.unet,
            Network::TextEncoder => &self.text_encoder,
            Network::TextEncoder2 => &self.text_encoder_2,
        };
        let pattern = config
            .alpha_pattern
            .iter()
            .find(|(key, _)| module == key || module.ends_with(&format!(".{key}")));
        let Some(alpha) = pattern.map(|(_, alpha)| *alpha).or(config.alpha) else {
            return 1.0;
        };
        let rank = rank as f64;
        if config.rank_stabilized {
            alpha / rank.sqrt()
        } else {
            alpha / rank
        }
    }
}

impl NetworkScale {
    fn read(config: &Map<String, Value>, prefix: &str) -> Result<Self, String> {
        let get = |name: &str| config.get(&format!("{prefix}.{name}"));
        if get("use_dora").and_then(Value::as_bool) == Some(true) {
            return Err(
                "DoRA is not supported yet (Minus merges LoRA and LoCon files)".to_string(),
            );
        }
        let alpha_pattern = match get("alpha_pattern") {
            Some(Value::Object(patterns)) => patterns
                .iter()
                .map(|(key, alpha)| {
                    let alpha = alpha
                        .as_f64()
                        .ok_or_else(|| format!("{prefix}.alpha_pattern `{key}` is not a number"))?;
                    Ok((key.clone(), alpha))
                })
                .collect::<Result<_, String>>()?,
            _ => Vec::new(),
        };
        Ok(Self {
            alpha: get("lora_alpha").and_then(Value::as_f64),
            alpha_pattern,
            rank_stabilized: get("use_rslora").and_then(Value::as_bool) == Some(true),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scales(config: &str) -> Result<PeftScales, String> {
        let metadata = HashMap::from([(METADATA_KEY.to_string(), config.to_string())]);
        PeftScales::from_metadata(&metadata)
    }

    #[test]
    fn alpha_patterns_and_rslora_set_the_scale() -> Result<(), String> {
        let peft = scales(
            r#"{"unet.lora_alpha": 2, "unet.alpha_pattern": {"mid.attn2.to_q": 8},
                "text_encoder.lora_alpha": 4, "text_encoder.use_rslora": true,
                "text_encoder_2.lora_alpha": 1}"#,
        )?;
        assert_eq!(peft.scale(Network::Unet, "a.to_q", 4), 0.5);
        assert_eq!(peft.scale(Network::Unet, "x.mid.attn2.to_q", 4), 2.0);
        assert_eq!(peft.scale(Network::TextEncoder, "q_proj", 4), 2.0);
        assert_eq!(peft.scale(Network::TextEncoder2, "q_proj", 4), 0.25);
        assert_eq!(PeftScales::default().scale(Network::Unet, "a", 4), 1.0);
        Ok(())
    }

    #[test]
    fn dora_and_broken_metadata_are_refused() {
        let dora = scales(r#"{"unet.use_dora": true}"#)
            .err()
            .unwrap_or_default();
        assert!(dora.contains("DoRA is not supported yet"), "{dora}");
        assert!(scales("[1]").is_err());
    }
}
