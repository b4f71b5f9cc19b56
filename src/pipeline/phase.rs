//! What a run is doing outside its denoising steps, for honest progress reports.

/// A stage of a run before or after the denoising loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The text encoder runs (or its cache answers) for both prompts.
    EncodingPrompts,
    /// Prompt images are read, hashed and run through the image encoder.
    EncodingImages,
    /// The denoising loop runs its first step (later steps report themselves).
    FirstStep,
    /// The VAE turns the final latents into pictures.
    Decoding,
}

impl Phase {
    /// What the window and the command line say while this phase runs.
    pub fn label(self) -> &'static str {
        match self {
            Self::EncodingPrompts => "Encoding prompts",
            Self::EncodingImages => "Encoding images",
            Self::FirstStep => "First step",
            Self::Decoding => "Decoding",
        }
    }
}
