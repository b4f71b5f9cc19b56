//! Sanity bounds on network configs, checked when a config is read so that a bad
//! value is reported with its file and field instead of failing later (or allocating
//! without bound, or panicking on an index).

/// A config value out of bounds: the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub field: &'static str,
    pub message: String,
}

/// A config that can say whether its values make a buildable network.
pub trait CheckedConfig {
    /// The first value out of bounds, if any.
    fn check(&self) -> Result<(), ConfigProblem>;
}

/// Far above any SD 1.5-family network, far below what would exhaust memory.
pub const MAX_CHANNELS: usize = 16_384;
/// Layers per block, transformer depth and encoder layers above this are refused.
pub const MAX_LAYERS: usize = 128;

/// `value` must lie in `1..=max`.
pub fn positive_at_most(
    field: &'static str,
    value: usize,
    max: usize,
) -> Result<(), ConfigProblem> {
    if value == 0 || value > max {
        return Err(ConfigProblem {
            field,
            message: format!("is {value}, expected 1 to {max}"),
        });
    }
    Ok(())
}

/// `value` must be finite and positive.
pub fn positive_finite(field: &'static str, value: f64) -> Result<(), ConfigProblem> {
    if !(value.is_finite() && value > 0.0) {
        return Err(ConfigProblem {
            field,
            message: format!("is {value}, expected a positive number"),
        });
    }
    Ok(())
}

/// `value` must be divisible by `divisor` (channels by groups or heads).
pub fn divisible(
    field: &'static str,
    value: usize,
    divisor_name: &str,
    divisor: usize,
) -> Result<(), ConfigProblem> {
    if !value.is_multiple_of(divisor) {
        return Err(ConfigProblem {
            field,
            message: format!("{value} is not divisible by {divisor_name} {divisor}"),
        });
    }
    Ok(())
}

/// Every entry of a channel list must be in bounds, and the list non-empty and short.
pub fn channel_list(field: &'static str, channels: &[usize]) -> Result<(), ConfigProblem> {
    if channels.is_empty() || channels.len() > 16 {
        return Err(ConfigProblem {
            field,
            message: format!("has {} entries, expected 1 to 16", channels.len()),
        });
    }
    for &value in channels {
        positive_at_most(field, value, MAX_CHANNELS)?;
    }
    Ok(())
}

/// A non-empty list of block widths and a group count that divides each of them
/// (the GroupNorms of UNets and VAEs).
pub fn channels_and_groups(channels: &[usize], groups: usize) -> Result<(), ConfigProblem> {
    channel_list("block_out_channels", channels)?;
    positive_at_most("norm_num_groups", groups, MAX_CHANNELS)?;
    for &width in channels {
        divisible("block_out_channels", width, "norm_num_groups", groups)?;
    }
    Ok(())
}

/// The sizes every CLIP transformer config (text or vision) shares.
pub struct TransformerSizes {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub layer_norm_eps: f64,
}

/// Bounds on a CLIP transformer's sizes; the heads must divide the hidden size.
pub fn check_transformer(sizes: TransformerSizes) -> Result<(), ConfigProblem> {
    positive_at_most("hidden_size", sizes.hidden_size, MAX_CHANNELS)?;
    positive_at_most(
        "intermediate_size",
        sizes.intermediate_size,
        4 * MAX_CHANNELS,
    )?;
    positive_at_most("num_hidden_layers", sizes.num_hidden_layers, MAX_LAYERS)?;
    positive_at_most(
        "num_attention_heads",
        sizes.num_attention_heads,
        MAX_CHANNELS,
    )?;
    divisible(
        "hidden_size",
        sizes.hidden_size,
        "num_attention_heads",
        sizes.num_attention_heads,
    )?;
    positive_finite("layer_norm_eps", sizes.layer_norm_eps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_name_the_field() {
        assert!(positive_at_most("layers", 2, MAX_LAYERS).is_ok());
        let problem = positive_at_most("layers", 1_000_000_000, MAX_LAYERS).err();
        assert_eq!(problem.map(|p| p.field), Some("layers"));
        let message = |problem: Result<(), ConfigProblem>| problem.err().map(|p| p.message);
        assert_eq!(
            message(positive_finite("eps", f64::NAN)),
            Some("is NaN, expected a positive number".to_string())
        );
        assert_eq!(
            message(divisible("channels", 320, "groups", 0)),
            Some("320 is not divisible by groups 0".to_string())
        );
        assert!(divisible("channels", 320, "groups", 32).is_ok());
        assert_eq!(
            message(channel_list("block_out_channels", &[])),
            Some("has 0 entries, expected 1 to 16".to_string())
        );
    }
}
