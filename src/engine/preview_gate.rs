//! Previews only as fast as the window shows them: taking one waits for the device
//! and, on Metal, frees its pooled buffers, so a step takes a preview only when the
//! window has acknowledged ([`crate::engine::Command::PreviewShown`]) the last one.

/// Whether the next step may take a preview.
#[derive(Debug)]
pub struct PreviewGate {
    open: bool,
}

impl Default for PreviewGate {
    fn default() -> Self {
        Self { open: true }
    }
}

impl PreviewGate {
    /// A new job: its first step takes a preview whatever happened before.
    pub fn start_job(&mut self) {
        self.open = true;
    }

    /// Whether this step takes a preview; if so, the next waits for [`Self::shown`].
    pub fn take(&mut self) -> bool {
        std::mem::replace(&mut self.open, false)
    }

    /// The window has shown the last preview.
    pub fn shown(&mut self) {
        self.open = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_preview_until_the_window_has_shown_it() {
        let mut gate = PreviewGate::default();
        assert!(gate.take());
        assert!(!gate.take());
        assert!(!gate.take());
        gate.shown();
        assert!(gate.take());
        assert!(!gate.take());
        gate.start_job();
        assert!(gate.take());
    }
}
