//! Option values with one name each. The command line (clap), the settings files and
//! saved PNGs (serde) and the menus all read a value's name from the one table a
//! [`named_choices!`] declaration writes, so the three can never drift apart.

/// Declares a fieldless enum whose variants each carry their one name (and any older
/// names still accepted when reading), and derives from that table:
/// `ALL` (menu order), `name()`, `from_name()`, `Serialize`/`Deserialize` and
/// `clap::ValueEnum`.
///
/// ```text
/// named_choices! {
///     /// How a thing is done.
///     #[derive(Default)]
///     pub enum Way {
///         #[default]
///         Plain = "plain",
///         Fancy = "fancy" | "old-fancy",
///     }
/// }
/// ```
macro_rules! named_choices {
    (
        $(#[$meta:meta])*
        $vis:vis enum $Name:ident {
            $(
                $(#[$variant_meta:meta])*
                $Variant:ident = $name:literal $(| $alias:literal)*
            ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $Name {
            $( $(#[$variant_meta])* $Variant ),+
        }

        impl $Name {
            /// Every value, in menu order.
            pub const ALL: [Self; [$(stringify!($Variant)),+].len()] = [$(Self::$Variant),+];

            /// The value's name on the command line, in settings and in saved images.
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$Variant => $name),+
                }
            }

            /// The value called `name`, or by one of its older names.
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($name $(| $alias)* => Some(Self::$Variant),)+
                    _ => None,
                }
            }
        }

        impl serde::Serialize for $Name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
                serializer.serialize_str(self.name())
            }
        }

        impl<'de> serde::Deserialize<'de> for $Name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
                let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                Self::from_name(&name).ok_or_else(|| {
                    <D::Error as serde::de::Error>::unknown_variant(&name, &[$($name),+])
                })
            }
        }

        impl clap::ValueEnum for $Name {
            fn value_variants<'a>() -> &'a [Self] {
                &Self::ALL
            }

            fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
                Some(match self {
                    $(Self::$Variant => clap::builder::PossibleValue::new($name)$(.alias($alias))*),+
                })
            }
        }
    };
}

pub(crate) use named_choices;

#[cfg(test)]
mod tests {

    named_choices! {
        /// A test enum.
        #[derive(Default)]
        enum Way {
            #[default]
            Plain = "plain",
            Fancy = "fancy" | "old-fancy",
        }
    }

    #[test]
    fn one_name_serves_serde_clap_and_menus() -> anyhow::Result<()> {
        use clap::ValueEnum;
        assert_eq!(Way::ALL, [Way::Plain, Way::Fancy]);
        assert_eq!(Way::default().name(), "plain");
        assert_eq!(serde_json::to_string(&Way::Fancy)?, r#""fancy""#);
        assert_eq!(serde_json::from_str::<Way>(r#""old-fancy""#)?, Way::Fancy);
        let error = serde_json::from_str::<Way>(r#""odd""#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("unknown variant `odd`"), "{error}");
        assert_eq!(Way::from_str("fancy", false), Ok(Way::Fancy));
        assert_eq!(Way::from_str("old-fancy", false), Ok(Way::Fancy));
        assert!(Way::from_str("odd", false).is_err_and(|e| e.contains("odd")));
        Ok(())
    }
}
