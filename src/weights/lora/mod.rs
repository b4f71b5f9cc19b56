//! LoRA files users already have (kohya LoRA and LoCon, diffusers/PEFT), merged into
//! the UNet's and text encoders' weights (SD 1.5's one, SDXL's two) as they load, each
//! at its own strength.
//!
//! A file is read into layers (`file`, with `kind` refusing what Minus does not merge,
//! `header` for its metadata and hash, `peft` for diffusers' alphas), each layer is
//! matched to the weight it changes (`names`), and `W + Σ strength · scale · up·down`
//! replaces the weight (`merge`). `patched` keeps each network's un-merged weights of
//! the changed layers, so another strength merges again without reading the model.

pub mod choice;
pub mod file;
pub mod header;
pub mod kind;
pub mod library;
pub mod merge;
pub mod names;
pub mod patched;
pub mod peft;
pub mod set;

pub use choice::LoraChoice;
pub use names::{Network, Target};
pub use patched::PatchedWeights;
pub use set::LoraSet;

/// At most this many names are listed in a message.
const NAMES_LISTED: usize = 3;

/// The first few of `names`, and how many more there are, for messages.
fn some_names(names: &[&str]) -> String {
    let listed: Vec<String> = names
        .iter()
        .take(NAMES_LISTED)
        .map(|name| format!("`{name}`"))
        .collect();
    let more = names.len().saturating_sub(NAMES_LISTED);
    if more == 0 {
        listed.join(", ")
    } else {
        format!("{} and {more} more", listed.join(", "))
    }
}
