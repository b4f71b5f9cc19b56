//! A sweep over masks: the same run with the masks as set, all off, or one image's
//! mask off, so the effect of a mask shows on one seed.

use super::sweep_values::parse_list;
use crate::pipeline::Request;

/// What one value of a mask sweep does to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MaskSwitch {
    /// The masks as set.
    On,
    /// Every mask off.
    Off,
    /// The mask of the positive (`negative` false) or negative image `number` (from 1) off.
    OneOff { negative: bool, number: usize },
}

impl MaskSwitch {
    /// Reads `on`, `off`, `+N` (positive image N) or `-N` (negative image N).
    fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let one = |negative: bool, digits: &str| {
            digits
                .parse::<usize>()
                .ok()
                .filter(|&n| n >= 1)
                .map(|number| Self::OneOff { negative, number })
        };
        let parsed = match text {
            "on" => Some(Self::On),
            "off" => Some(Self::Off),
            _ => match text.split_at_checked(1) {
                Some(("+", digits)) => one(false, digits),
                Some(("-", digits)) => one(true, digits),
                _ => None,
            },
        };
        parsed.ok_or_else(|| {
            format!(
                "mask sweep value `{text}` is not on, off, +N (the Nth image's mask off) \
                 or -N (the Nth negative image's)"
            )
        })
    }

    /// The request with this switch applied, and its grid label.
    fn apply(self, base: &Request) -> Result<(Request, String), String> {
        let mut request = base.clone();
        let sides = [&mut request.images, &mut request.negative_images];
        let label = match self {
            Self::On => "masks on".to_string(),
            Self::Off => {
                for image in sides.into_iter().flatten() {
                    image.mask_enabled = false;
                }
                "masks off".to_string()
            }
            Self::OneOff { negative, number } => {
                let (side, sign) = if negative { (1, '-') } else { (0, '+') };
                let [positive, negatives] = sides;
                let images = if side == 1 { negatives } else { positive };
                let image = images
                    .get_mut(number - 1)
                    .filter(|image| image.mask.is_some())
                    .ok_or_else(|| {
                        format!("mask sweep value `{sign}{number}`: that image has no mask")
                    })?;
                image.mask_enabled = false;
                format!("mask {sign}{number} off")
            }
        };
        Ok((request, label))
    }
}

/// One request and its grid label per value of `values` (comma separated).
pub fn mask_requests(base: &Request, values: &str) -> Result<Vec<(Request, String)>, String> {
    parse_list(values, MaskSwitch::parse)?
        .into_iter()
        .map(|switch| switch.apply(base))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{ImagePrompt, MaskFile};

    fn masked(path: &str) -> ImagePrompt {
        ImagePrompt {
            mask: Some(MaskFile::new(format!("{path}-mask.png"))),
            ..ImagePrompt::new(path)
        }
    }

    #[test]
    fn each_value_switches_the_masks_it_names() {
        let base = Request {
            images: vec![masked("a.png"), masked("b.png")],
            negative_images: vec![masked("c.png")],
            ..Request::default()
        };
        let cells = mask_requests(&base, "on, off, +2, -1").expect("values parse");
        let switches: Vec<(Vec<bool>, Vec<bool>, &str)> = cells
            .iter()
            .map(|(r, label)| {
                let on = |images: &[ImagePrompt]| images.iter().map(|i| i.mask_enabled).collect();
                (on(&r.images), on(&r.negative_images), label.as_str())
            })
            .collect();
        assert_eq!(
            switches,
            [
                (vec![true, true], vec![true], "masks on"),
                (vec![false, false], vec![false], "masks off"),
                (vec![true, false], vec![true], "mask +2 off"),
                (vec![true, true], vec![false], "mask -1 off"),
            ]
        );
    }

    #[test]
    fn values_that_name_no_masked_image_are_refused() {
        let base = Request {
            images: vec![masked("a.png"), ImagePrompt::new("b.png")],
            ..Request::default()
        };
        let no_mask = mask_requests(&base, "on, +2").unwrap_err();
        assert!(
            no_mask.contains("`+2`: that image has no mask"),
            "{no_mask}"
        );
        let missing = mask_requests(&base, "-1").unwrap_err();
        assert!(
            missing.contains("`-1`: that image has no mask"),
            "{missing}"
        );
        for bad in ["+0", "half", "+x", "0.5"] {
            let error = mask_requests(&base, bad).unwrap_err();
            assert!(
                error.contains(&format!("`{bad}` is not on, off")),
                "{error}"
            );
        }
    }
}
