//! Key names of single-file SDXL checkpoints (Stability's `generative-models` layout,
//! as A1111 and ComfyUI save them) and their transformers equivalents.
//!
//! The UNet and the VAE keep the LDM names of SD 1.5 (see `ldm`); the first text
//! encoder is stored in transformers' own names under its prefix; the second is
//! OpenCLIP's, whose attention fuses q, k and v into one `in_proj` and whose
//! `text_projection` is stored the other way round.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor;

use super::TensorFile;
use crate::{MinusError, Result};

/// Prefix the text encoders of every SDXL single file start with.
pub const CONDITIONER_PREFIX: &str = "conditioner.embedders.";
/// Prefix of the first text encoder (CLIP ViT-L, in transformers' names).
pub const FIRST_TEXT_PREFIX: &str = "conditioner.embedders.0.transformer.";
/// Prefix of the second text encoder (OpenCLIP ViT-bigG).
pub const SECOND_TEXT_PREFIX: &str = "conditioner.embedders.1.model.";

/// (OpenCLIP, transformers) names of the second encoder's tensors outside its layers;
/// `text_projection` is apart, as it is transposed.
const OPEN_CLIP_TOP: [(&str, &str); 4] = [
    (
        "token_embedding.weight",
        "text_model.embeddings.token_embedding.weight",
    ),
    (
        "positional_embedding",
        "text_model.embeddings.position_embedding.weight",
    ),
    ("ln_final.weight", "text_model.final_layer_norm.weight"),
    ("ln_final.bias", "text_model.final_layer_norm.bias"),
];

/// (OpenCLIP, transformers) names inside one residual block, before `.weight`/`.bias`.
const OPEN_CLIP_LAYER_PARTS: [(&str, &str); 5] = [
    ("attn.out_proj", "self_attn.out_proj"),
    ("ln_1", "layer_norm1"),
    ("ln_2", "layer_norm2"),
    ("mlp.c_fc", "mlp.fc1"),
    ("mlp.c_proj", "mlp.fc2"),
];

/// Where OpenCLIP's residual blocks start.
const OPEN_CLIP_LAYERS: &str = "transformer.resblocks.";
/// OpenCLIP's `text_projection`, stored `[hidden, projection]`.
const OPEN_CLIP_PROJECTION: &str = "text_projection";
/// The fused attention input projection of one block, stored `[3 × hidden, …]`.
const IN_PROJ: &str = "attn.in_proj_";

/// The second text encoder of an SDXL single file, in the names of transformers'
/// `CLIPTextModelWithProjection`. Tensors it does not use (`logit_scale`, an
/// attention mask) are left out; a tensor of the wrong rank, or an `in_proj` that
/// does not split into q, k and v, is an error naming the file and the key.
pub fn open_clip_text_encoder(file: &TensorFile) -> Result<TensorFile> {
    let path = file.path();
    let mut out = HashMap::new();
    for (key, tensor) in file.tensors() {
        let Some(rest) = key.strip_prefix(SECOND_TEXT_PREFIX) else {
            continue;
        };
        if rest == OPEN_CLIP_PROJECTION {
            let projection = transposed(tensor).map_err(|e| bad_tensor(path, key, &e))?;
            out.insert("text_projection.weight".to_string(), projection);
        } else if let Some((_, name)) = OPEN_CLIP_TOP.iter().find(|(clip, _)| *clip == rest) {
            out.insert(name.to_string(), tensor.clone());
        } else if let Some((layer, part)) = rest
            .strip_prefix(OPEN_CLIP_LAYERS)
            .and_then(|r| r.split_once('.'))
        {
            let layer_prefix = format!("text_model.encoder.layers.{layer}.");
            if let Some(kind) = part.strip_prefix(IN_PROJ) {
                let thirds = split_in_thirds(tensor).map_err(|e| bad_tensor(path, key, &e))?;
                for (projection, third) in ["q_proj", "k_proj", "v_proj"].iter().zip(thirds) {
                    out.insert(
                        format!("{layer_prefix}self_attn.{projection}.{kind}"),
                        third,
                    );
                }
            } else if let Some(name) = layer_part(part) {
                out.insert(format!("{layer_prefix}{name}"), tensor.clone());
            }
        }
    }
    Ok(TensorFile::from_tensors(path, out))
}

/// The transformers name of a part of one residual block (`ln_1.weight` →
/// `layer_norm1.weight`).
fn layer_part(part: &str) -> Option<String> {
    OPEN_CLIP_LAYER_PARTS.iter().find_map(|(clip, name)| {
        let suffix = part.strip_prefix(clip)?.strip_prefix('.')?;
        Some(format!("{name}.{suffix}"))
    })
}

/// `[hidden, projection]` as the `[projection, hidden]` a linear layer stores.
fn transposed(tensor: &Tensor) -> std::result::Result<Tensor, String> {
    if tensor.rank() != 2 {
        return Err(format!("has shape {:?}, expected 2 axes", tensor.dims()));
    }
    tensor
        .t()
        .and_then(|t| t.contiguous())
        .map_err(|e| e.to_string())
}

/// q, k and v of a fused `in_proj` weight `[3 × hidden, hidden]` or bias `[3 × hidden]`.
fn split_in_thirds(tensor: &Tensor) -> std::result::Result<Vec<Tensor>, String> {
    let rows = tensor.dims().first().copied().unwrap_or(0);
    if tensor.rank() > 2 || rows == 0 || rows % 3 != 0 {
        return Err(format!(
            "has shape {:?}, expected [3 × hidden] rows (q, k and v together)",
            tensor.dims()
        ));
    }
    let third = rows / 3;
    (0..3)
        .map(|i| tensor.narrow(0, i * third, third))
        .collect::<candle_core::Result<Vec<_>>>()
        .map_err(|e| e.to_string())
}

fn bad_tensor(path: &Path, key: &str, problem: &str) -> MinusError {
    MinusError::BadWeights {
        path: path.to_path_buf(),
        message: format!("tensor `{key}` {problem}"),
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;

    fn file_with(key: &str, tensor: Tensor) -> TensorFile {
        TensorFile::from_tensors(
            "sdxl.safetensors",
            HashMap::from([(format!("{SECOND_TEXT_PREFIX}{key}"), tensor)]),
        )
    }

    #[test]
    fn in_proj_splits_into_q_k_v_in_order() -> anyhow::Result<()> {
        let fused = Tensor::arange(0f32, 12.0, &Device::Cpu)?.reshape((6, 2))?;
        let file = file_with("transformer.resblocks.4.attn.in_proj_weight", fused);
        let split = open_clip_text_encoder(&file)?;
        let first_row = |projection: &str| -> anyhow::Result<Vec<f32>> {
            let key = format!("text_model.encoder.layers.4.self_attn.{projection}.weight");
            let tensor = split.get(&key).ok_or_else(|| anyhow::anyhow!("no {key}"))?;
            Ok(tensor.get(0)?.to_vec1()?)
        };
        assert_eq!(first_row("q_proj")?, [0.0, 1.0]);
        assert_eq!(first_row("k_proj")?, [4.0, 5.0]);
        assert_eq!(first_row("v_proj")?, [8.0, 9.0]);
        Ok(())
    }

    #[test]
    fn odd_shapes_are_errors_naming_the_key() -> anyhow::Result<()> {
        let cases = [
            ("transformer.resblocks.0.attn.in_proj_bias", vec![7]),
            ("transformer.resblocks.0.attn.in_proj_weight", vec![0, 4]),
            ("transformer.resblocks.0.attn.in_proj_weight", vec![3, 1, 1]),
            ("text_projection", vec![4]),
        ];
        for (key, shape) in cases {
            let file = file_with(
                key,
                Tensor::zeros(shape.as_slice(), DType::F32, &Device::Cpu)?,
            );
            let message = open_clip_text_encoder(&file)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                message.contains("sdxl.safetensors") && message.contains(key),
                "{key} {shape:?}: {message}"
            );
        }
        Ok(())
    }
}
