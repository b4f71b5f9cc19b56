//! What build this is: the package version and the git commit `build.rs` embedded.

/// `0.1.0 (abc1234)`; the commit reads `unknown` when built outside git.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("MINUS_COMMIT"), ")");

/// `minus 0.1.0 (abc1234)`: shown in the window and written into saved settings.
pub const VERSION_LINE: &str = concat!(
    "minus ",
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("MINUS_COMMIT"),
    ")"
);
