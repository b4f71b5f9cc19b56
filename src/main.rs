//! `minus`: with no subcommand, opens the window; `minus generate` runs from the command line.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
// On Windows the window opens without a console window behind it; subcommands print to
// the terminal they were started from (`attach_to_terminal`).
#![cfg_attr(all(windows, feature = "gui"), windows_subsystem = "windows")]

mod cli;

use clap::{Parser, Subcommand};

/// Negative image prompts for Stable Diffusion 1.5.
#[derive(Parser)]
#[command(name = "minus", version = minus::version::VERSION, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Generate images from the command line.
    Generate(Box<cli::generate::GenerateArgs>),
    /// List, download and verify models.
    Models(cli::models::ModelsArgs),
    /// Time the engine on random full-size weights.
    Bench(Box<cli::bench::BenchArgs>),
}

fn main() {
    minus::allocator::keep_freed_memory_for_reuse();
    // Arguments mean a terminal (or a script) started Minus: `--help` and subcommands print there.
    if std::env::args_os().len() > 1 {
        attach_to_terminal();
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Generate(args)) => cli::generate::run(&args),
        Some(Command::Models(args)) => cli::models::run(&args),
        Some(Command::Bench(args)) => cli::bench::run(&args),
        None => open_window(),
    };
    if let Err(error) = result {
        if let Some(usage) = error.downcast_ref::<cli::UsageError>() {
            usage_error(&usage.0);
        }
        eprintln!("error: {}", one_line(&error));
        std::process::exit(1);
    }
}

/// Prints `message` as clap prints a bad flag value, with the usage line, and exits 2.
fn usage_error(message: &str) -> ! {
    use clap::CommandFactory;
    let mut root = Cli::command();
    // Built, so the subcommand's usage line reads `minus generate ...`.
    root.build();
    let mut generate = root
        .find_subcommand_mut("generate")
        .cloned()
        .unwrap_or_else(Cli::command);
    generate
        .error(clap::error::ErrorKind::ValueValidation, message)
        .exit()
}

/// Gives a windowed Windows program the console of the terminal that started it (it
/// has none of its own); without one (started from Explorer) nothing happens.
#[cfg(all(windows, feature = "gui"))]
fn attach_to_terminal() {
    /// `AttachConsole`'s "the parent process" (`(DWORD)-1`).
    const ATTACH_PARENT_PROCESS: u32 = u32::MAX;
    #[link(name = "kernel32")]
    unsafe extern "system" {
        fn AttachConsole(process_id: u32) -> i32;
    }
    // SAFETY: takes no pointers; failing (no parent console) leaves the process as it was.
    unsafe {
        AttachConsole(ATTACH_PARENT_PROCESS);
    }
}

/// Elsewhere a program started from a terminal already writes to it.
#[cfg(not(all(windows, feature = "gui")))]
fn attach_to_terminal() {}

#[cfg(feature = "gui")]
fn open_window() -> anyhow::Result<()> {
    minus::app::run()
}

#[cfg(not(feature = "gui"))]
fn open_window() -> anyhow::Result<()> {
    anyhow::bail!("this build has no window (built without the `gui` feature): see `minus --help`")
}

/// The error and its causes on one line (candle appends backtraces on new lines).
fn one_line(error: &anyhow::Error) -> String {
    let text = format!("{error:#}");
    text.lines().next().unwrap_or_default().to_string()
}
