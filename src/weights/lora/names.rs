//! The names LoRA files give the layers they change, and the network weights those
//! names mean.
//!
//! kohya names a layer after its module with `_` for `.` (`lora_unet_down_blocks_0_...`,
//! from the diffusers UNet; `lora_unet_input_blocks_1_1_...` from the original LDM one;
//! `lora_te_text_model_encoder_...`; SDXL's `lora_te1_`/`lora_te2_` for its two text
//! encoders), PEFT with the dots kept (`unet.down_blocks.0....`,
//! `text_encoder.text_model.encoder...`, or without `text_model.` from transformers 5;
//! `text_encoder_2.` for SDXL's second).
//! Turning `_` back into `.` is ambiguous (`to_q`, `down_blocks`), so the table goes the
//! other way: every weight of the network, spelled each way a file may spell it.

use std::collections::HashMap;

use super::super::TensorFile;
use super::super::ldm::unet_key_map;
use crate::models::unet::UNetConfig;

/// The networks a LoRA changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    Unet,
    TextEncoder,
    /// SDXL's second text encoder.
    TextEncoder2,
}

impl Network {
    /// The network's name in messages.
    pub fn label(self) -> &'static str {
        match self {
            Self::Unet => "UNet",
            Self::TextEncoder => "text encoder",
            Self::TextEncoder2 => "second text encoder",
        }
    }

    /// The network a LoRA module name belongs to, and the name without the network's
    /// prefix. Names without a known prefix are taken for UNet names (diffusers' oldest
    /// files name UNet layers bare).
    pub fn of_module(module: &str) -> (Self, &str) {
        const PREFIXES: [(&str, Network); 7] = [
            ("lora_unet_", Network::Unet),
            ("lora_te_", Network::TextEncoder),
            ("lora_te1_", Network::TextEncoder),
            ("lora_te2_", Network::TextEncoder2),
            ("unet.", Network::Unet),
            ("text_encoder.", Network::TextEncoder),
            ("text_encoder_2.", Network::TextEncoder2),
        ];
        PREFIXES
            .iter()
            .find_map(|(prefix, network)| Some((*network, module.strip_prefix(prefix)?)))
            .unwrap_or((Self::Unet, module))
    }
}

/// Which network's weights to name, with what its names depend on.
#[derive(Clone, Copy)]
pub enum Target<'a> {
    /// The UNet, whose LDM names follow its block layout.
    Unet(&'a UNetConfig),
    TextEncoder,
    /// SDXL's second text encoder (its tower under `text_model.`, and `text_projection`).
    TextEncoder2,
}

impl Target<'_> {
    /// The network named.
    pub fn network(self) -> Network {
        match self {
            Self::Unet(_) => Network::Unet,
            Self::TextEncoder => Network::TextEncoder,
            Self::TextEncoder2 => Network::TextEncoder2,
        }
    }
}

/// Module names as LoRA files spell them (without the network prefix) → the key of the
/// weight they change.
pub struct LayerNames {
    weights: HashMap<String, String>,
}

/// Files saved by transformers 4 keep this prefix on text encoder names, 5 drops it.
const TEXT_MODEL: &str = "text_model.";

impl LayerNames {
    /// Every weight of `file` (a network's tensors, diffusers names), spelled the ways
    /// LoRA files for `target` spell it.
    pub fn new(file: &TensorFile, target: Target) -> Self {
        let mut weights = HashMap::new();
        let mut add = |module: String, key: &str| {
            weights.insert(module.replace('.', "_"), key.to_string());
            weights.insert(module, key.to_string());
        };
        let ldm = match target {
            Target::Unet(config) => Some(unet_key_map(config)),
            Target::TextEncoder | Target::TextEncoder2 => None,
        };
        for key in file.keys() {
            let Some(module) = key.strip_suffix(".weight") else {
                continue;
            };
            match &ldm {
                Some(map) => {
                    if let Some(ldm_name) = map.to_ldm(module) {
                        add(ldm_name, key);
                    }
                }
                None => {
                    let bare = module.strip_prefix(TEXT_MODEL).unwrap_or(module);
                    add(format!("{TEXT_MODEL}{bare}"), key);
                    add(bare.to_string(), key);
                }
            }
            add(module.to_string(), key);
        }
        Self { weights }
    }

    /// The key of the weight the LoRA module `module` changes.
    pub fn weight_key(&self, module: &str) -> Option<&str> {
        self.weights.get(module).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor};

    use super::*;

    const SD15_UNET_CONFIG: &str = include_str!("../../../resources/sd15/unet_config.json");

    fn file(keys: &[&str]) -> TensorFile {
        let tensors = keys
            .iter()
            .map(|k| {
                let tensor = Tensor::zeros(1, DType::F32, &Device::Cpu).expect("a tensor");
                (k.to_string(), tensor)
            })
            .collect();
        TensorFile::from_tensors("model", tensors)
    }

    #[test]
    fn unet_weights_answer_to_diffusers_ldm_and_kohya_names() -> serde_json::Result<()> {
        let config: UNetConfig = serde_json::from_str(SD15_UNET_CONFIG)?;
        let attention = "down_blocks.0.attentions.1.transformer_blocks.0.attn1.to_q.weight";
        let conv = "up_blocks.1.resnets.2.conv1.weight";
        let down = "down_blocks.2.downsamplers.0.conv.weight";
        let names = LayerNames::new(&file(&[attention, conv, down]), Target::Unet(&config));
        let cases = [
            (
                "down_blocks_0_attentions_1_transformer_blocks_0_attn1_to_q",
                attention,
            ),
            (
                "down_blocks.0.attentions.1.transformer_blocks.0.attn1.to_q",
                attention,
            ),
            (
                "input_blocks_2_1_transformer_blocks_0_attn1_to_q",
                attention,
            ),
            ("output_blocks_5_0_in_layers_2", conv),
            ("up_blocks_1_resnets_2_conv1", conv),
            ("input_blocks_9_0_op", down),
        ];
        for (module, key) in cases {
            assert_eq!(names.weight_key(module), Some(key), "{module}");
        }
        assert_eq!(names.weight_key("input_blocks_2_1_proj_in"), None);
        Ok(())
    }

    #[test]
    fn text_encoder_weights_answer_with_and_without_text_model() {
        for key in [
            "encoder.layers.0.self_attn.q_proj.weight",
            "text_model.encoder.layers.0.self_attn.q_proj.weight",
        ] {
            let names = LayerNames::new(&file(&[key]), Target::TextEncoder);
            for module in [
                "text_model_encoder_layers_0_self_attn_q_proj",
                "text_model.encoder.layers.0.self_attn.q_proj",
                "encoder.layers.0.self_attn.q_proj",
            ] {
                assert_eq!(names.weight_key(module), Some(key), "{key} as {module}");
            }
        }
    }

    #[test]
    fn prefixes_say_the_network() {
        assert_eq!(
            Network::of_module("lora_te_text_model_x"),
            (Network::TextEncoder, "text_model_x")
        );
        assert_eq!(Network::of_module("unet.a.b"), (Network::Unet, "a.b"));
        assert_eq!(
            Network::of_module("lora_te1_text_model_x"),
            (Network::TextEncoder, "text_model_x")
        );
        assert_eq!(
            Network::of_module("lora_te2_text_model_x"),
            (Network::TextEncoder2, "text_model_x")
        );
        assert_eq!(
            Network::of_module("text_encoder_2.text_model.x"),
            (Network::TextEncoder2, "text_model.x")
        );
        assert_eq!(
            Network::of_module("mid_block.a"),
            (Network::Unet, "mid_block.a")
        );
    }
}
