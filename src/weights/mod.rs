//! Finding and loading weight files: safetensors, diffusers folders, configs.

pub mod bounded_pickle;
pub mod catalogue;
pub mod config;
pub mod diffusers;
pub mod hub;
pub mod ldm;
pub mod local;
pub mod pickle;
pub mod single_file;
pub mod tensor_file;

pub use tensor_file::TensorFile;
