//! Reading one LoRA file into its layers: each layer's module name, down and up
//! matrices, and the scale its change is multiplied by (alpha over rank).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};

use super::header::read_header;
use super::kind::{is_sdxl_key, refuse_pickles, refuse_unsupported, split_key};
use super::names::Network;
use super::peft::PeftScales;
use super::some_names;
use crate::weights::TensorFile;
use crate::{MinusError, Result};

/// One layer of a LoRA: the weight it changes by `scale · up·down`.
#[derive(Debug, Clone)]
pub struct LoraLayer {
    pub network: Network,
    /// The module's name as the file spells it, without the network prefix.
    pub module: String,
    /// `[rank, in]`, or `[rank, in, k, k]` for a convolution; f32, host memory.
    pub down: Tensor,
    /// `[out, rank]`, or `[out, rank, 1, 1]`; f32, host memory.
    pub up: Tensor,
    /// alpha / rank (1 without an alpha).
    pub scale: f64,
}

/// A LoRA file's layers, with the hash its saved settings name it by.
#[derive(Debug, Clone)]
pub struct LoraFile {
    pub path: PathBuf,
    /// SHA-256 (hex) of the file after its header, as A1111 and kohya hash LoRAs.
    pub addnet_hash: String,
    /// In module-name order.
    pub layers: Vec<LoraLayer>,
    /// Whether its names say it was made for SDXL (its text encoders' prefixes).
    pub made_for_sdxl: bool,
}

fn bad(path: &Path, message: String) -> MinusError {
    MinusError::BadWeights {
        path: path.to_path_buf(),
        message,
    }
}

impl LoraFile {
    /// Reads a `.safetensors` LoRA (kohya LoRA or LoCon, or diffusers/PEFT), refusing
    /// pickles, the kinds Minus does not merge, and tensors that are no part of a layer.
    pub fn read(path: &Path) -> Result<Self> {
        refuse_pickles(path)?;
        let header = read_header(path)?;
        let file = TensorFile::load_safetensors(path, DType::F32)?;
        refuse_unsupported(path, file.keys())?;
        let peft = PeftScales::from_metadata(&header.metadata).map_err(|m| bad(path, m))?;
        let mut modules: BTreeMap<&str, [Option<&Tensor>; 3]> = BTreeMap::new();
        let mut strays = Vec::new();
        for (key, tensor) in file.tensors() {
            match split_key(key) {
                Some((module, part)) => {
                    modules.entry(module).or_default()[part.index()] = Some(tensor);
                }
                None => strays.push(key.as_str()),
            }
        }
        if !strays.is_empty() {
            strays.sort_unstable();
            return Err(bad(
                path,
                format!(
                    "not a LoRA file Minus can read: tensors that are no part of a LoRA layer ({})",
                    some_names(&strays)
                ),
            ));
        }
        if modules.is_empty() {
            return Err(bad(path, "no LoRA layers in this file".to_string()));
        }
        let layers = modules
            .into_iter()
            .map(|(module, parts)| layer(module, parts, &peft))
            .collect::<std::result::Result<_, String>>()
            .map_err(|m| bad(path, m))?;
        Ok(Self {
            path: path.to_path_buf(),
            addnet_hash: header.addnet_hash,
            layers,
            made_for_sdxl: file.keys().any(is_sdxl_key),
        })
    }
}

/// One layer from its `[down, up, alpha]` tensors.
fn layer(
    module: &str,
    [down, up, alpha]: [Option<&Tensor>; 3],
    peft: &PeftScales,
) -> std::result::Result<LoraLayer, String> {
    let (Some(down), Some(up)) = (down, up) else {
        let missing = if down.is_none() {
            "down (lora_down/lora_A)"
        } else {
            "up (lora_up/lora_B)"
        };
        return Err(format!("layer `{module}` has no {missing} tensor"));
    };
    let rank = down.dims().first().copied().unwrap_or(0);
    let up_ok = match up.dims() {
        [_, r] | [_, r, 1, 1] => *r == rank,
        _ => false,
    };
    if rank == 0 || !matches!(down.rank(), 2 | 4) || !up_ok {
        return Err(format!(
            "layer `{module}` has shapes a LoRA layer cannot have (down {:?}, up {:?})",
            down.dims(),
            up.dims()
        ));
    }
    let (network, name) = Network::of_module(module);
    let scale = match alpha {
        Some(alpha) => {
            // Some trainers store it as an integer.
            let values = alpha
                .to_dtype(DType::F32)
                .and_then(|a| a.flatten_all()?.to_vec1::<f32>())
                .map_err(|e| format!("layer `{module}`: alpha: {e}"))?;
            let [alpha] = values[..] else {
                return Err(format!(
                    "layer `{module}`: alpha has {} values",
                    values.len()
                ));
            };
            f64::from(alpha) / rank as f64
        }
        None => peft.scale(network, name, rank),
    };
    Ok(LoraLayer {
        network,
        module: name.to_string(),
        down: down.clone(),
        up: up.clone(),
        scale,
    })
}
