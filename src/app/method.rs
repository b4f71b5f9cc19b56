//! Named ways to say "not this": the presets row and the values of a method sweep.

use crate::pipeline::{Combine, EmbedsScaling, Request, WeightType};

/// cubiq's noise amount of the "cubiq noise" preset (his examples use 0.3-0.4).
pub const PRESET_NOISE: f64 = 0.35;

/// One method: the seed's, with at most one of cubiq's options changed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    /// Negative image tokens in the unconditioned half (the seed's method).
    Seed,
    /// The seed's method with the negative image switched off (weight 0).
    NegativeOff,
    /// cubiq's noised negative.
    Noise(f64),
    Combine(Combine),
    /// One weight type on both halves.
    WeightType(WeightType),
    Scaling(EmbedsScaling),
}

impl Method {
    /// The presets row, in order: (button label, method, tooltip).
    pub const PRESETS: [(&'static str, Self, &'static str); 3] = [
        (
            "the seed's method",
            Self::Seed,
            "Negative images steer the unconditioned half; cubiq's options off",
        ),
        (
            "cubiq noise",
            Self::Noise(PRESET_NOISE),
            "The unconditioned half sees noised copies of the images",
        ),
        (
            "subtract",
            Self::Combine(Combine::Subtract),
            "Negative images are also taken away inside the positive embedding",
        ),
    ];

    /// A copy of `request` run with this method (the method settings reset first).
    pub fn apply(self, request: &Request) -> Request {
        let defaults = Request::default();
        let mut request = Request {
            noise: defaults.noise,
            combine: defaults.combine,
            weight_type: defaults.weight_type,
            negative_weight_type: defaults.negative_weight_type,
            embeds_scaling: defaults.embeds_scaling,
            ..request.clone()
        };
        match self {
            Self::Seed => {}
            Self::NegativeOff => request.negative_ip_weight = 0.0,
            Self::Noise(amount) => request.noise = amount,
            Self::Combine(mode) => request.combine = mode,
            Self::WeightType(kind) => {
                request.weight_type = kind;
                request.negative_weight_type = kind;
            }
            Self::Scaling(scaling) => request.embeds_scaling = scaling,
        }
        request
    }

    /// The name typed in a sweep and shown on its grid.
    pub fn label(self) -> String {
        match self {
            Self::Seed => "seed".to_string(),
            Self::NegativeOff => "off".to_string(),
            Self::Noise(amount) => format!("noise {amount}"),
            Self::Combine(mode) => mode.name().to_string(),
            Self::WeightType(kind) => kind.name().to_string(),
            Self::Scaling(scaling) => scaling.name().to_string(),
        }
    }

    /// Parses one sweep value: `seed`, `off`, `noise` or `noise 0.5`, a combine mode,
    /// a weight type or an embeds scaling, by their command-line names.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim().to_lowercase();
        if let Some(amount) = text.strip_prefix("noise") {
            let amount = amount.trim();
            if amount.is_empty() {
                return Ok(Self::Noise(PRESET_NOISE));
            }
            return match amount.parse::<f64>() {
                Ok(value) if (0.0..=1.0).contains(&value) => Ok(Self::Noise(value)),
                _ => Err(format!(
                    "noise amount `{amount}` is not a number from 0 to 1"
                )),
            };
        }
        match text.as_str() {
            "seed" => return Ok(Self::Seed),
            "off" => return Ok(Self::NegativeOff),
            _ => {}
        }
        let named = Combine::from_name(&text)
            .map(Self::Combine)
            .or_else(|| WeightType::from_name(&text).map(Self::WeightType))
            .or_else(|| EmbedsScaling::from_name(&text).map(Self::Scaling));
        named.ok_or_else(|| {
            format!("`{text}` is not a method (try seed, off, noise, subtract, ease-in, k-v)")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_named_option() {
        for name in [
            "seed",
            "off",
            "noise",
            "noise 0.6",
            "norm-average",
            "strong-middle",
            "k-mean-v-c-penalty",
        ] {
            let method = Method::parse(name).expect(name);
            assert_eq!(Method::parse(&method.label()), Ok(method));
        }
        assert_eq!(
            Method::parse("noise 3"),
            Err("noise amount `3` is not a number from 0 to 1".to_string())
        );
        assert!(Method::parse("blur").unwrap_err().contains("`blur`"));
    }

    #[test]
    fn a_method_resets_the_others() {
        let noisy = Method::Noise(0.5).apply(&Request::default());
        let subtract = Method::Combine(Combine::Subtract).apply(&noisy);
        assert_eq!(subtract.noise, 0.0);
        assert_eq!(subtract.combine, Combine::Subtract);
        assert_eq!(Method::Seed.apply(&subtract), Request::default());
        assert_eq!(Method::NegativeOff.apply(&noisy).negative_ip_weight, 0.0);
    }
}
