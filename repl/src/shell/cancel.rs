//! Ctrl-C while a command runs. The terminal's signal keys are turned off
//! for the command's duration and a thread watches the input for the
//! Ctrl-C byte, setting the session's cancel flag. No SIGINT is raised, so
//! local node processes (which share the terminal's process group) are
//! not interrupted along with the generation. Other keys typed meanwhile
//! are kept and handed back as type-ahead.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

const CTRL_C: u8 = 0x03;

/// Restores the terminal and stops watching when dropped.
pub struct CancelWatcher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<u8>>>,
    saved: Option<libc::termios>,
}

impl CancelWatcher {
    /// Clears `cancel` (a Ctrl-C belongs to the command it was pressed
    /// in), then watches stdin when it is a terminal.
    pub fn start(cancel: Arc<AtomicBool>) -> Self {
        cancel.store(false, Ordering::Relaxed);
        let stop = Arc::new(AtomicBool::new(false));
        let mut watcher = CancelWatcher {
            stop: stop.clone(),
            thread: None,
            saved: None,
        };
        let Some(saved) = raw_mode() else {
            return watcher;
        };
        watcher.saved = Some(saved);
        watcher.thread = Some(std::thread::spawn(move || watch(&stop, &cancel)));
        watcher
    }
}

impl CancelWatcher {
    /// Stops watching, restores the terminal and returns the bytes typed
    /// while the command ran (none after a Ctrl-C, which discards them).
    pub fn finish(mut self) -> Vec<u8> {
        self.stop_watching()
    }

    fn stop_watching(&mut self) -> Vec<u8> {
        self.stop.store(true, Ordering::Relaxed);
        let typed = self
            .thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        if let Some(saved) = self.saved.take() {
            // SAFETY: restoring attributes read by tcgetattr on the same fd.
            // TCSANOW keeps keys typed since the watcher stopped reading.
            unsafe {
                libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &saved);
            }
        }
        typed
    }
}

impl Drop for CancelWatcher {
    fn drop(&mut self) {
        self.stop_watching();
    }
}

/// Turns off signal keys, line buffering and echo on a terminal stdin;
/// returns the attributes to restore.
fn raw_mode() -> Option<libc::termios> {
    // SAFETY: isatty/tcgetattr/tcsetattr only read and write the termios
    // struct we pass, which is fully initialised by tcgetattr (zeroed first).
    unsafe {
        if libc::isatty(libc::STDIN_FILENO) != 1 {
            return None;
        }
        let mut saved: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(libc::STDIN_FILENO, &mut saved) != 0 {
            return None;
        }
        let mut raw = saved;
        raw.c_lflag &= !(libc::ISIG | libc::ICANON | libc::ECHO);
        raw.c_cc[libc::VMIN] = 0;
        raw.c_cc[libc::VTIME] = 0;
        if libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &raw) != 0 {
            return None;
        }
        Some(saved)
    }
}

fn watch(stop: &AtomicBool, cancel: &AtomicBool) -> Vec<u8> {
    let mut typed = Vec::new();
    let mut buf = [0u8; 64];
    while !stop.load(Ordering::Relaxed) {
        let mut fds = libc::pollfd {
            fd: libc::STDIN_FILENO,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; the buffer outlives the read and its
        // length is passed.
        let n = unsafe {
            if libc::poll(&mut fds, 1, 50) <= 0 {
                continue;
            }
            libc::read(libc::STDIN_FILENO, buf.as_mut_ptr().cast(), buf.len())
        };
        if n <= 0 {
            // End of input or an error: nothing more to watch.
            std::thread::sleep(std::time::Duration::from_millis(50));
            continue;
        }
        let got = &buf[..n as usize];
        match got.iter().rposition(|&b| b == CTRL_C) {
            Some(at) => {
                cancel.store(true, Ordering::Relaxed);
                typed.clear();
                typed.extend_from_slice(&got[at + 1..]);
            }
            None => typed.extend_from_slice(got),
        }
    }
    typed
}
