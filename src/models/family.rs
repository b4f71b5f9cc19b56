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
    /// Whether this is SD 1.5 (the family saved settings name only when it is not).
    pub fn is_sd15(&self) -> bool {
        *self == Self::Sd15
    }

    /// The side of the square picture the family was trained at.
    pub fn default_side_px(self) -> usize {
        match self {
            Self::Sd15 => 512,
            Self::Sdxl => 1024,
        }
    }

    /// The size presets the window offers (width, height), square first.
    pub fn size_presets(self) -> &'static [(usize, usize)] {
        match self {
            Self::Sd15 => &[(512, 512), (512, 768), (768, 512), (640, 640), (768, 768)],
            Self::Sdxl => &[
                (1024, 1024),
                (896, 1152),
                (1152, 896),
                (832, 1216),
                (1216, 832),
            ],
        }
    }

    /// The name of the tiny preview decoder made for the family's latents.
    pub fn preview_decoder_name(self) -> &'static str {
        match self {
            Self::Sd15 => "TAESD",
            Self::Sdxl => "TAESDXL",
        }
    }

    /// The name people use.
    pub fn display_name(self) -> &'static str {
        match self {
            Self::Sd15 => "SD 1.5",
            Self::Sdxl => "SDXL",
        }
    }
}
