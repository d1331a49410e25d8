//! Sending SIGTERM and SIGKILL to processes this command started (the standard library can
//! only kill its own children, and only with SIGKILL).

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
