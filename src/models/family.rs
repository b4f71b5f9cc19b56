//! Which model family a set of files belongs to: what the loaded-models list shows,
//! the settings text records and a restore compares.

use crate::choices::named_choices;

named_choices! {
    /// The Stable Diffusion family of a model.
    #[derive(Default)]
    pub enum ModelFamily {
        /// SD 1.5 and the checkpoints trained from it.
        #[default]
        Sd15 = "sd15" | "sd1.5",
        /// SDXL and its descendants (Pony, Illustrious, Juggernaut...): two text
        /// encoders and the size-conditioned UNet.
        Sdxl = "sdxl",
    }
}

impl ModelFamily {
    /// The name people use.
    pub fn display_name(self) -> &'static str {
        match self {
            Self::Sd15 => "SD 1.5",
            Self::Sdxl => "SDXL",
        }
    }
}
