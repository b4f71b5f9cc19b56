//! Finding and loading weight files: where they are, safetensors, pickles, diffusers
//! folders, single-file checkpoints, configs, hub downloads.

pub mod bounded_pickle;
pub mod catalogue;
pub mod config;
pub mod diffusers;
pub mod family;
pub mod hub;
pub mod ldm;
pub mod local;
pub mod locations;
pub mod lora;
pub mod pickle;
pub mod safetensors_header;
pub mod sgm;
pub mod shapes;
pub mod single_file;
pub mod tensor_file;

pub use locations::ModelPaths;
pub use tensor_file::TensorFile;
