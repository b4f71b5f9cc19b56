//! The worker thread that owns the device and the models: the GUI sends it
//! [`Command`]s and drains [`Event`]s, and never waits on it.

mod preview_gate;
mod protocol;
mod worker;

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, unbounded};

pub use protocol::{Command, Event, JobId, LoadSettings, LoadedModels};

/// Called after every event so the UI wakes up and drains it.
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// A handle on the running engine thread.
pub struct Engine {
    commands: Sender<Command>,
    events: Receiver<Event>,
    thread: Option<JoinHandle<()>>,
    next_job: u64,
}

impl Engine {
    /// Starts the engine thread.
    pub fn spawn(waker: Waker) -> std::io::Result<Self> {
        let (command_tx, command_rx) = unbounded();
        let (event_tx, event_rx) = unbounded();
        let thread = std::thread::Builder::new()
            .name("minus-engine".to_string())
            .spawn(move || worker::Worker::new(command_rx, event_tx, waker).run())?;
        Ok(Self {
            commands: command_tx,
            events: event_rx,
            thread: Some(thread),
            next_job: 1,
        })
    }

    /// Sends a command; a stopped engine is reported through [`Engine::is_running`].
    pub fn send(&self, command: Command) {
        // The only failure is a dead engine thread, which `is_running` reports.
        let _ = self.commands.send(command);
    }

    /// A fresh job id for a `Generate` command.
    pub fn next_job_id(&mut self) -> JobId {
        let id = JobId(self.next_job);
        self.next_job += 1;
        id
    }

    /// All events that arrived since the last call (never blocks).
    pub fn drain_events(&self) -> Vec<Event> {
        self.events.try_iter().collect()
    }

    /// Whether the engine thread is still alive.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Shutdown);
        // The worker checks for commands between steps; don't hold up exit on a long step.
        if let Some(thread) = self.thread.take()
            && thread.is_finished()
        {
            let _ = thread.join();
        }
    }
}
