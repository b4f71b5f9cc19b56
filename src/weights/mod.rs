//! Finding and loading weight files: safetensors, diffusers folders, configs.

pub mod config;
pub mod diffusers;
pub mod ldm;
pub mod pickle;
pub mod single_file;
pub mod tensor_file;

pub use tensor_file::TensorFile;
