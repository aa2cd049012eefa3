//! Child processes that die with routerdc: `routerdc-torch` for the commands that need
//! libtorch, and each stage of `routerdc run`. Without this, killing `routerdc` (TERM, or
//! kill -9) would leave its child running, re-parented to PID 1 and still writing into `--out`.

use std::ffi::OsStr;
use std::os::unix::process::CommandExt as _;
use std::process::Command;

/// A command whose process gets SIGTERM when this process dies (Linux `PR_SET_PDEATHSIG`); a
/// child of that child does the same, so a whole chain (`run` → stage → `routerdc-torch`) ends.
pub fn command(program: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new(program);
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec and calls only async-signal-safe
    // functions (prctl, getppid, _exit), as `pre_exec` requires.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before the prctl: then nothing would signal us.
            if libc::getppid() as u32 != parent {
                libc::_exit(143);
            }
            Ok(())
        });
    }
    command
}
