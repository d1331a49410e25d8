//! Sending SIGTERM and SIGKILL to processes this command started (the standard library can
//! only kill its own children, and only with SIGKILL), and what a closed output does to
//! this command.

/// Asks process `pid` to stop (SIGTERM); false when the signal could not be sent.
pub fn terminate(pid: u32) -> bool {
    send(pid, libc::SIGTERM)
}

/// Kills process `pid` at once (SIGKILL), as a crash would.
pub fn kill(pid: u32) -> bool {
    send(pid, libc::SIGKILL)
}

fn send(pid: u32, signal: libc::c_int) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill(2) only reads its two integer arguments.
    unsafe { libc::kill(pid, signal) == 0 }
}

/// Lets a closed standard output end this process (SIGPIPE's default), as it ends other
/// command-line tools: `tandem status | head -3` then exits quietly once `head` has read
/// its lines. Rust ignores SIGPIPE, and the next print to the closed pipe panicked.
pub fn exit_when_output_closes() {
    // SAFETY: signal(2) only sets this process's disposition for one signal; it is called
    // before any other thread could be writing.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
