//! One network's weights with LoRAs merged in, and what merging them again at other
//! strengths needs without reading the model file: the un-merged weights of the layers
//! the LoRAs change (host memory), and which LoRA layers act on each.

use std::collections::BTreeMap;

use candle_core::{Device, Tensor};

use super::merge::{fits, merged_weight};
use super::names::{LayerNames, Target};
use super::set::LoraSet;
use super::some_names;
use crate::weights::TensorFile;
use crate::{MinusError, Result};

/// A weight the LoRAs change.
#[derive(Debug, Clone)]
struct Patch {
    key: String,
    /// The model's own weight, in host memory.
    base: Tensor,
    /// (file, layer) indices into the set of the LoRA layers acting on it.
    layers: Vec<(usize, usize)>,
}

/// A network's tensors on the device, the changed weights merged.
#[derive(Clone)]
pub struct PatchedWeights {
    file: TensorFile,
    patches: Vec<Patch>,
    device: Device,
}

impl PatchedWeights {
    /// `file` (a network's tensors in host memory) with the layers of `set` on
    /// `target` merged in, on `device`, and what merging again at other strengths
    /// needs; `file` as it is when no LoRA changes `target`.
    pub fn apply(
        set: &LoraSet,
        file: TensorFile,
        target: Target,
        device: &Device,
    ) -> Result<(TensorFile, Option<Self>)> {
        if !set.touches(target.network()) {
            return Ok((file, None));
        }
        let weights = Self::new(file, set, target, device)?;
        Ok((weights.file().clone(), Some(weights)))
    }

    /// Matches `set`'s layers on `target` to `file`'s weights, puts every tensor on
    /// `device` (freeing the host copies, except the un-merged weights of the changed
    /// layers) and merges the layers in at the set's strengths.
    fn new(file: TensorFile, set: &LoraSet, target: Target, device: &Device) -> Result<Self> {
        let matched = match_layers(&file, set, target)?;
        let path = file.path().to_path_buf();
        let mut host = file.tensors().clone();
        drop(file);
        let mut patches = Vec::with_capacity(matched.len());
        for (key, layers) in matched {
            let base = host.remove(&key).ok_or_else(|| MinusError::MissingTensor {
                path: path.clone(),
                key: key.clone(),
            })?;
            patches.push(Patch { key, base, layers });
        }
        let tensors = host
            .into_iter()
            .map(|(key, tensor)| Ok((key, tensor.to_device(device)?)))
            .collect::<Result<_>>()?;
        let mut weights = Self {
            file: TensorFile::from_tensors(path, tensors),
            patches,
            device: device.clone(),
        };
        weights.merge(set)?;
        Ok(weights)
    }

    /// The network's tensors, to build it from.
    pub fn file(&self) -> &TensorFile {
        &self.file
    }

    /// Merges `set` into the changed weights again, from their un-merged values.
    pub fn merge(&mut self, set: &LoraSet) -> Result<()> {
        let mut tensors = self.file.tensors().clone();
        for patch in &self.patches {
            let layers = patch
                .layers
                .iter()
                .filter_map(|&(file, layer)| set.layer(file, layer));
            let merged = merged_weight(&patch.base, layers)?.to_device(&self.device)?;
            tensors.insert(patch.key.clone(), merged);
        }
        self.file = TensorFile::from_tensors(self.file.path(), tensors);
        Ok(())
    }

    /// Whether a change from `old` to `new` strengths changes these weights.
    pub fn changes_between(&self, old: &LoraSet, new: &LoraSet) -> bool {
        self.patches.iter().any(|patch| {
            patch
                .layers
                .iter()
                .any(|&(file, _)| old.strength_differs(new, file))
        })
    }
}

/// The weight key each of `set`'s layers on `target` changes, grouped by key; an error
/// naming the file and the first few layers when some match no weight, or one whose
/// change has another shape than its weight.
fn match_layers(
    file: &TensorFile,
    set: &LoraSet,
    target: Target,
) -> Result<BTreeMap<String, Vec<(usize, usize)>>> {
    let names = LayerNames::new(file, target);
    let network = target.network();
    let mut matched: BTreeMap<String, Vec<(usize, usize)>> = BTreeMap::new();
    for (file_index, lora) in set.files().iter().enumerate() {
        let bad = |message: String| MinusError::BadWeights {
            path: lora.path.clone(),
            message,
        };
        let mut unmatched = Vec::new();
        for (layer_index, layer) in lora.layers.iter().enumerate() {
            if layer.network != network {
                continue;
            }
            let Some(key) = names.weight_key(&layer.module) else {
                unmatched.push(layer.module.as_str());
                continue;
            };
            let dims = file.dims(key)?;
            if !fits(layer, &dims) {
                return Err(bad(format!(
                    "layer `{}` (down {:?}, up {:?}) does not fit the {} weight `{key}` {dims:?} (a LoRA for another model?)",
                    layer.module,
                    layer.down.dims(),
                    layer.up.dims(),
                    network.label()
                )));
            }
            matched
                .entry(key.to_string())
                .or_default()
                .push((file_index, layer_index));
        }
        if !unmatched.is_empty() {
            return Err(bad(format!(
                "{} layers match no layer of the {}: {} (a LoRA for another model?)",
                unmatched.len(),
                network.label(),
                some_names(&unmatched)
            )));
        }
    }
    Ok(matched)
}
