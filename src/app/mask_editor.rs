//! The mask editor: a window at the output's aspect where the user paints where an
//! image acts (brush, eraser, rectangle, invert, clear), over a faint view of the image
//! or the last result; a mask file can be loaded or dropped onto it.

use std::path::{Path, PathBuf};

use crossbeam_channel::Receiver;
use egui::{Color32, Key, Pos2, Rect, Sense, TextureHandle};

use super::loader::Target;
use super::mask_canvas::{MaskCanvas, OFF, ON};
use super::mask_view::{MASK_COLOUR, read_in_background};

/// The longest side of the canvas on screen, in points.
const CANVAS_SIDE: f32 = 420.0;
/// Memory for the masks Undo can go back to (one byte a pixel: 256 at 1024²).
const UNDO_BUDGET_BYTES: usize = 64 << 20;
/// Ctrl+Z (Cmd+Z on macOS) takes the last change back.
const UNDO_SHORTCUT: egui::KeyboardShortcut =
    egui::KeyboardShortcut::new(egui::Modifiers::COMMAND, Key::Z);

/// What a drag on the canvas does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    Brush,
    Eraser,
    Rectangle,
}

/// What the editor asks the window to do.
pub enum EditorAction {
    None,
    /// Use the drawn mask for the image being edited.
    Use(MaskCanvas),
    /// Close without changing the mask.
    Cancel,
    /// A mask file could not be read: say so.
    Failed(String),
}

/// The open editor of one pane image's mask.
pub struct MaskEditor {
    /// The pane and index of the image whose mask this is.
    pub target: (Target, usize),
    title: String,
    canvas: MaskCanvas,
    /// The mask before each change, newest last.
    undo: Vec<MaskCanvas>,
    tool: Tool,
    brush_radius_px: f32,
    /// Where the pointer was in the last frame of a stroke, in mask pixels.
    stroke_from: Option<[f32; 2]>,
    /// Where a rectangle drag started and where it is now, in mask pixels.
    rectangle: Option<([f32; 2], [f32; 2])>,
    overlay: Option<TextureHandle>,
    background: Option<TextureHandle>,
    /// A mask file being read into the editor.
    reading: Option<Receiver<Result<MaskCanvas, String>>>,
    /// The answer of the Load file... dialog.
    dialog: Option<Receiver<PathBuf>>,
    /// The editor window's rectangle in the last frame, for files dropped onto it.
    pub rect: Rect,
}

impl MaskEditor {
    /// An editor for the image at `target` named `image_name`, starting from `canvas`
    /// (its current mask, or an empty one at the output's size), drawn over `background`.
    pub fn new(
        target: (Target, usize),
        image_name: &str,
        canvas: MaskCanvas,
        background: Option<TextureHandle>,
    ) -> Self {
        let [width, height] = canvas.size();
        let brush_radius_px = (width.max(height) as f32 / 16.0).max(1.0);
        Self {
            target,
            title: format!("Mask of {image_name} ({width}×{height})"),
            canvas,
            undo: Vec::new(),
            tool: Tool::Brush,
            brush_radius_px,
            stroke_from: None,
            rectangle: None,
            overlay: None,
            background,
            reading: None,
            dialog: None,
            rect: Rect::NOTHING,
        }
    }

    /// The mask as drawn so far.
    #[cfg(feature = "test-support")]
    pub fn canvas(&self) -> &MaskCanvas {
        &self.canvas
    }

    /// Reads the mask file at `path` into the editor (fitted to the output's size).
    pub fn load(&mut self, path: &Path, ctx: &egui::Context) {
        self.reading = Some(read_in_background(path, self.canvas.size(), ctx));
    }

    /// Draws the editor; Enter uses the mask, Ctrl+Z undoes, Escape cancels.
    pub fn ui(&mut self, ctx: &egui::Context) -> EditorAction {
        let mut action = self.take_answers(ctx);
        let mut open = true;
        let window = egui::Window::new(self.title.clone())
            .id(egui::Id::unique("mask editor"))
            .open(&mut open)
            .collapsible(false)
            .resizable(false)
            .show(ctx, |ui| {
                self.tools_ui(ui, ctx);
                self.canvas_ui(ui);
                if let Some(chosen) = self.buttons_ui(ui) {
                    action = chosen;
                }
            });
        if let Some(window) = window {
            self.rect = window.response.rect;
        }
        // Enter in a text field elsewhere belongs to that field.
        let typing = ctx.memory(|m| m.focused().is_some());
        if !typing && ctx.input_mut(|i| i.consume_key(egui::Modifiers::NONE, Key::Enter)) {
            action = EditorAction::Use(self.canvas.clone());
        }
        if !typing && ctx.input_mut(|i| i.consume_shortcut(&UNDO_SHORTCUT)) {
            self.undo();
        }
        if !open || ctx.input_mut(|i| i.consume_key(egui::Modifiers::NONE, Key::Escape)) {
            action = EditorAction::Cancel;
        }
        action
    }

    /// Takes a finished file read and the file dialog's answer.
    fn take_answers(&mut self, ctx: &egui::Context) -> EditorAction {
        match self.dialog.as_ref().map(Receiver::try_recv) {
            Some(Ok(path)) => {
                self.dialog = None;
                self.load(&path, ctx);
            }
            Some(Err(crossbeam_channel::TryRecvError::Disconnected)) => self.dialog = None,
            Some(Err(crossbeam_channel::TryRecvError::Empty)) | None => {}
        }
        let Some(reading) = &self.reading else {
            return EditorAction::None;
        };
        match reading.try_recv() {
            Ok(Ok(canvas)) => {
                self.reading = None;
                self.set_canvas(canvas);
                EditorAction::None
            }
            Ok(Err(error)) => {
                self.reading = None;
                EditorAction::Failed(error)
            }
            Err(_) => EditorAction::None,
        }
    }

    fn set_canvas(&mut self, canvas: MaskCanvas) {
        self.remember();
        self.canvas = canvas;
        self.overlay = None;
    }

    /// Keeps the mask as it is for Undo, dropping the oldest beyond the budget.
    fn remember(&mut self) {
        let [width, height] = self.canvas.size();
        let kept = (UNDO_BUDGET_BYTES / (width * height).max(1)).max(1);
        self.undo.push(self.canvas.clone());
        if self.undo.len() > kept {
            let excess = self.undo.len() - kept;
            self.undo.drain(..excess);
        }
    }

    /// Applies `change` to the mask, remembering it first.
    fn change(&mut self, change: impl FnOnce(&mut MaskCanvas)) {
        self.remember();
        change(&mut self.canvas);
        self.overlay = None;
    }

    /// Goes back to the mask before the last change.
    fn undo(&mut self) {
        if let Some(canvas) = self.undo.pop() {
            self.canvas = canvas;
            self.overlay = None;
        }
    }

    /// The tool choice, the brush size, Invert, Clear and Load file....
    fn tools_ui(&mut self, ui: &mut egui::Ui, ctx: &egui::Context) {
        ui.horizontal(|ui| {
            ui.selectable_value(&mut self.tool, Tool::Brush, "Brush")
                .on_hover_text("Paint where the image acts");
            ui.selectable_value(&mut self.tool, Tool::Eraser, "Eraser")
                .on_hover_text("Paint where it does not");
            ui.selectable_value(&mut self.tool, Tool::Rectangle, "Rectangle")
                .on_hover_text("Drag a rectangle where the image acts");
            let largest = self.canvas.size()[0].max(self.canvas.size()[1]) as f32 / 2.0;
            ui.add(
                egui::Slider::new(&mut self.brush_radius_px, 1.0..=largest.max(1.0))
                    .text("size")
                    .max_decimals(0),
            )
            .on_hover_text("Brush and eraser radius, in output pixels");
        });
        ui.horizontal(|ui| {
            if ui
                .button("Invert")
                .on_hover_text("Swap where the image acts")
                .clicked()
            {
                self.change(MaskCanvas::invert);
            }
            if ui
                .button("Clear")
                .on_hover_text("Erase everything")
                .clicked()
            {
                self.change(MaskCanvas::clear);
            }
            let undo = ui.add_enabled(!self.undo.is_empty(), egui::Button::new("Undo"));
            if undo
                .on_hover_text("Take the last change back (Ctrl+Z)")
                .clicked()
            {
                self.undo();
            }
            let tip = "Read a mask from a picture (white = the image acts there); \
                       pictures can also be dropped here";
            if ui.button("Load file...").on_hover_text(tip).clicked() && self.dialog.is_none() {
                self.dialog = Some(pick_mask(ctx));
            }
            if self.reading.is_some() {
                ui.spinner();
            }
        });
    }

    /// The canvas: background, mask overlay, and the pointer painting on it.
    fn canvas_ui(&mut self, ui: &mut egui::Ui) {
        let [width, height] = self.canvas.size().map(|side| side as f32);
        let scale = CANVAS_SIDE / width.max(height);
        let (response, painter) =
            ui.allocate_painter(egui::vec2(width, height) * scale, Sense::click_and_drag());
        response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Canvas, true, "mask canvas"));
        let rect = response.rect;
        let uv = Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0));
        painter.rect_filled(rect, 0.0, Color32::from_gray(20));
        if let Some(background) = &self.background {
            painter.image(background.id(), rect, uv, Color32::from_white_alpha(90));
        }
        let to_pixels = |pos: Pos2| [(pos.x - rect.min.x) / scale, (pos.y - rect.min.y) / scale];
        let pointer = response.interact_pointer_pos().map(to_pixels);
        // A drag is known as one only once the pointer has moved: a rectangle starts
        // where the button went down.
        let press_origin = ui.input(|i| i.pointer.press_origin()).map(to_pixels);
        self.paint(&response, pointer, press_origin);
        let overlay = self.overlay.get_or_insert_with(|| {
            ui.ctx().load_texture(
                "mask editor",
                self.canvas.overlay(MASK_COLOUR),
                egui::TextureOptions::NEAREST,
            )
        });
        painter.image(overlay.id(), rect, uv, Color32::WHITE);
        if let Some((from, to)) = self.rectangle {
            let corner = |p: [f32; 2]| rect.min + egui::vec2(p[0], p[1]) * scale;
            let outline = Rect::from_two_pos(corner(from), corner(to));
            let stroke = egui::Stroke::new(1.5, Color32::YELLOW);
            painter.rect_stroke(outline, 0.0, stroke, egui::StrokeKind::Inside);
        }
    }

    /// Applies the pointer to the mask: a brush or eraser stroke from the last
    /// position, or a rectangle filled when its drag ends.
    fn paint(
        &mut self,
        response: &egui::Response,
        pointer: Option<[f32; 2]>,
        press_origin: Option<[f32; 2]>,
    ) {
        let pressed = response.is_pointer_button_down_on() || response.clicked();
        match (self.tool, pointer) {
            (Tool::Brush | Tool::Eraser, Some(at)) if pressed => {
                let value = if self.tool == Tool::Brush { ON } else { OFF };
                let radius = self.brush_radius_px;
                match self.stroke_from {
                    // A stroke is one change for Undo, however many frames it takes.
                    None => self.change(|canvas| canvas.stroke(at, at, radius, value)),
                    Some(from) => {
                        self.canvas.stroke(from, at, radius, value);
                        self.overlay = None;
                    }
                }
                self.stroke_from = Some(at);
            }
            (Tool::Rectangle, Some(at)) if response.drag_started() => {
                self.rectangle = Some((press_origin.unwrap_or(at), at));
            }
            (Tool::Rectangle, Some(at)) if response.dragged() => {
                if let Some((_, to)) = &mut self.rectangle {
                    *to = at;
                }
            }
            _ => {}
        }
        if response.drag_stopped()
            && let Some((from, to)) = self.rectangle.take()
        {
            self.change(|canvas| canvas.fill_rect(from, to, ON));
        }
        if !response.is_pointer_button_down_on() {
            self.stroke_from = None;
        }
    }

    /// Use mask and Cancel.
    fn buttons_ui(&mut self, ui: &mut egui::Ui) -> Option<EditorAction> {
        let mut action = None;
        ui.horizontal(|ui| {
            let covered = self.canvas.on_count() as f64 * 100.0
                / (self.canvas.size()[0] * self.canvas.size()[1]).max(1) as f64;
            if ui
                .button("Use mask")
                .on_hover_text("The image acts only where the mask is painted (Enter)")
                .clicked()
            {
                action = Some(EditorAction::Use(self.canvas.clone()));
            }
            if ui
                .button("Cancel")
                .on_hover_text("Keep the mask as it was (Esc)")
                .clicked()
            {
                action = Some(EditorAction::Cancel);
            }
            ui.label(format!("covers {covered:.0}% of the picture"));
        });
        action
    }
}

/// Opens the system file dialog for a mask on its own thread; the answer arrives on
/// the returned channel (none when the dialog is cancelled).
fn pick_mask(ctx: &egui::Context) -> Receiver<PathBuf> {
    let (sender, receiver) = crossbeam_channel::bounded(1);
    let ctx = ctx.clone();
    // Without a thread the dialog cannot open, and the button does nothing.
    let _ = std::thread::Builder::new()
        .name("minus-mask-dialog".to_string())
        .spawn(move || {
            let picked = rfd::FileDialog::new()
                .add_filter("Images", &["png", "jpg", "jpeg", "webp", "bmp"])
                .pick_file();
            if let Some(path) = picked {
                let _ = sender.send(path);
            }
            ctx.request_repaint();
        });
    receiver
}
