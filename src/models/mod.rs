//! The networks of SD 1.5 + IP-Adapter, written against candle.

pub mod clip_text;
pub mod clip_transformer;
pub mod clip_vision;
pub mod clip_words;
pub mod config_check;
pub mod conv;
pub(crate) mod cpu;
pub mod family;
pub mod group_norm;
pub mod ip_adapter;
pub mod layers;
pub mod linear;
pub mod resnet;
pub mod sdxl_text;
pub mod taesd;
pub mod timing;
pub mod tokenizer;
pub mod unet;
pub mod vae;
pub mod vae_tiles;
