//! The UNet and text encoders (SDXL's second too) built with LoRAs merged into their
//! weights, and built again at other strengths from the un-merged weights kept at load,
//! so that a change of strength does not read the model files again.

use candle_core::{DType, Device};

use crate::Result;
use crate::models::clip_text::{ClipTextConfig, ClipTextModel, text_model_level};
use crate::models::sdxl_text::SecondTextEncoder;
use crate::models::unet::{UNet, UNetConfig};
use crate::weights::TensorFile;
use crate::weights::lora::{LoraChoice, LoraSet, Network, PatchedWeights, Target};

/// A network built with LoRAs merged in: its weights and config, to build it again.
struct Merged<C> {
    weights: PatchedWeights,
    config: C,
}

/// Builds a network from its tensors and config.
type Build<N, C> = fn(TensorFile, &C, &Device, DType) -> Result<N>;

/// What building SDXL's second text encoder needs besides its tensors.
#[derive(Clone)]
pub struct SecondTextConfig {
    pub text: ClipTextConfig,
    /// The id its tokenizer pads with.
    pub pad_token: u32,
}

/// The networks a change of strengths built again, `None` for each it left as it was.
pub struct Rebuilt {
    pub text_encoder: Option<ClipTextModel>,
    pub text_encoder_2: Option<SecondTextEncoder>,
    pub unet: Option<UNet>,
}

/// A setup's LoRAs, and what each network they change needs to be built again.
pub struct LoraNetworks {
    set: LoraSet,
    text_encoder: Option<Merged<ClipTextConfig>>,
    text_encoder_2: Option<Merged<SecondTextConfig>>,
    unet: Option<Merged<UNetConfig>>,
    /// The text encoder's identity without LoRAs.
    text_model_id: String,
}

impl LoraNetworks {
    /// `set`'s LoRAs, for the model whose text encoder `text_model_id` identifies.
    pub fn new(set: LoraSet, text_model_id: String) -> Self {
        Self {
            set,
            text_encoder: None,
            text_encoder_2: None,
            unet: None,
            text_model_id,
        }
    }

    /// The LoRAs, at their strengths, with their hashes.
    pub fn choices(&self) -> Vec<LoraChoice> {
        self.set.choices()
    }

    /// What the text encoders' outputs depend on: the model, and the LoRAs changing them.
    pub fn text_id(&self) -> String {
        let first = self.set.identity(Network::TextEncoder);
        let second = self.set.identity(Network::TextEncoder2);
        format!("{}{first}{second}", self.text_model_id)
    }

    /// Builds the text encoder from `file` (host memory) with the LoRAs merged in.
    pub fn text_encoder(
        &mut self,
        file: TensorFile,
        config: ClipTextConfig,
        device: &Device,
        dtype: DType,
    ) -> Result<ClipTextModel> {
        let (network, merged) = build_merged(
            &self.set,
            file,
            config,
            |_| Target::TextEncoder,
            build_text_encoder,
            (device, dtype),
        )?;
        self.text_encoder = merged;
        Ok(network)
    }

    /// Builds SDXL's second text encoder from `file` (host memory) with the LoRAs merged in.
    pub fn text_encoder_2(
        &mut self,
        file: TensorFile,
        config: SecondTextConfig,
        device: &Device,
        dtype: DType,
    ) -> Result<SecondTextEncoder> {
        let (network, merged) = build_merged(
            &self.set,
            file,
            config,
            |_| Target::TextEncoder2,
            build_second_text_encoder,
            (device, dtype),
        )?;
        self.text_encoder_2 = merged;
        Ok(network)
    }

    /// Builds the UNet from `file` (host memory) with the LoRAs merged in.
    pub fn unet(
        &mut self,
        file: TensorFile,
        config: UNetConfig,
        device: &Device,
        dtype: DType,
    ) -> Result<UNet> {
        let (network, merged) = build_merged(
            &self.set,
            file,
            config,
            |config| Target::Unet(config),
            build_unet,
            (device, dtype),
        )?;
        self.unet = merged;
        Ok(network)
    }

    /// The networks built again with the LoRAs at `strengths` (one per LoRA, in order),
    /// those the change leaves as they are not. Nothing changes when it fails.
    pub fn reweigh(&mut self, strengths: &[f64], device: &Device, dtype: DType) -> Result<Rebuilt> {
        let set = self.set.with_strengths(strengths)?;
        let on = (device, dtype);
        let text = rebuild(&self.text_encoder, &self.set, &set, build_text_encoder, on)?;
        let text_2 = rebuild(
            &self.text_encoder_2,
            &self.set,
            &set,
            build_second_text_encoder,
            on,
        )?;
        let unet = rebuild(&self.unet, &self.set, &set, build_unet, on)?;
        self.set = set;
        Ok(Rebuilt {
            text_encoder: keep(text, &mut self.text_encoder),
            text_encoder_2: keep(text_2, &mut self.text_encoder_2),
            unet: keep(unet, &mut self.unet),
        })
    }
}

/// The rebuilt network, keeping what building it again needs in `merged`.
fn keep<N, C>(rebuilt: Option<(N, Merged<C>)>, merged: &mut Option<Merged<C>>) -> Option<N> {
    rebuilt.map(|(network, weights)| {
        *merged = Some(weights);
        network
    })
}

/// Builds a network from `file` with `set`'s layers on `target(config)` merged in,
/// keeping what building it again needs when a LoRA changes it.
fn build_merged<N, C>(
    set: &LoraSet,
    file: TensorFile,
    config: C,
    target: for<'a> fn(&'a C) -> Target<'a>,
    build: Build<N, C>,
    (device, dtype): (&Device, DType),
) -> Result<(N, Option<Merged<C>>)> {
    let (file, weights) = PatchedWeights::apply(set, file, target(&config), device)?;
    let network = build(file, &config, device, dtype)?;
    Ok((network, weights.map(|weights| Merged { weights, config })))
}

/// A network built again with the LoRAs merged at `new`'s strengths, when they differ
/// from `old`'s for a LoRA that changes it.
fn rebuild<N, C: Clone>(
    merged: &Option<Merged<C>>,
    old: &LoraSet,
    new: &LoraSet,
    build: Build<N, C>,
    (device, dtype): (&Device, DType),
) -> Result<Option<(N, Merged<C>)>> {
    let Some(merged) = merged
        .as_ref()
        .filter(|merged| merged.weights.changes_between(old, new))
    else {
        return Ok(None);
    };
    let mut weights = merged.weights.clone();
    weights.merge(new)?;
    let network = build(weights.file().clone(), &merged.config, device, dtype)?;
    let config = merged.config.clone();
    Ok(Some((network, Merged { weights, config })))
}

// The builders take the file by value: its tensors are freed when the network is built.

/// Builds the text encoder from `file`.
fn build_text_encoder(
    file: TensorFile,
    config: &ClipTextConfig,
    device: &Device,
    dtype: DType,
) -> Result<ClipTextModel> {
    let vb = text_model_level(file.var_builder(dtype, device));
    ClipTextModel::load(vb, config).map_err(|e| file.load_error(e))
}

/// Builds SDXL's second text encoder from `file`.
fn build_second_text_encoder(
    file: TensorFile,
    config: &SecondTextConfig,
    device: &Device,
    dtype: DType,
) -> Result<SecondTextEncoder> {
    SecondTextEncoder::load(
        file.var_builder(dtype, device),
        &config.text,
        config.pad_token,
    )
    .map_err(|e| file.load_error(e))
}

/// Builds the UNet from `file`.
fn build_unet(
    file: TensorFile,
    config: &UNetConfig,
    device: &Device,
    dtype: DType,
) -> Result<UNet> {
    UNet::load(file.var_builder(dtype, device), config).map_err(|e| file.load_error(e))
}
