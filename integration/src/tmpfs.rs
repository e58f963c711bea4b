//! A small tmpfs mounted for one test: a device that really fills up (ENOSPC), unmounted when the guard
//! drops, even when the test fails.
//!
//! Mounting needs root (or a user namespace that allows tmpfs). A test that needs a tmpfs calls
//! [`tmpfs_or_skip`]: where mounting fails the test fails with the reason, unless
//! `OUTPOST_SKIP_MOUNT_TESTS=1` is set, in which case it says loudly that it checked nothing.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Set to `1` to let tests that need a tmpfs pass without checking anything where mounting is impossible.
pub const SKIP_ENV: &str = "OUTPOST_SKIP_MOUNT_TESTS";

/// A mounted tmpfs; see the module docs.
pub struct Tmpfs {
    // Dropped after `Drop::drop` unmounted it: removes the (then empty) mount point.
    mount_point: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it: `16m`) on a fresh temp dir.
    pub fn mount(size: &str) -> Result<Tmpfs, String> {
        let mount_point = tempfile::Builder::new()
            .prefix("outpost-it-tmpfs-")
            .tempdir()
            .map_err(|e| format!("cannot create a mount point: {e}"))?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(mount_point.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "`mount -t tmpfs -o size={size} tmpfs {}` failed ({}): {}",
                mount_point.path().display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs { mount_point })
    }

    pub fn path(&self) -> &Path {
        self.mount_point.path()
    }

    /// (total, available) bytes of the filesystem, from statvfs.
    pub fn space(&self) -> (u64, u64) {
        fs_space(self.path())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let dir = self.mount_point.path();
        let unmounted = Command::new("umount")
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Something still has a file open there (a process that outlived its test): detach the
            // mount now, the kernel frees it once the last file is closed.
            let lazy = Command::new("umount").arg("-l").arg(dir).status();
            if !lazy.is_ok_and(|s| s.success()) {
                eprintln!("cannot unmount the tmpfs at {}", dir.display());
            }
        }
    }
}

/// A tmpfs of `size` for the test `what`; `None` (after saying so on stderr) when mounting is impossible
/// and [`SKIP_ENV`]`=1`. Panics with the reason when mounting is impossible otherwise.
pub fn tmpfs_or_skip(size: &str, what: &str) -> Option<Tmpfs> {
    match Tmpfs::mount(size) {
        Ok(t) => Some(t),
        Err(e) if std::env::var(SKIP_ENV).is_ok_and(|v| v == "1") => {
            eprintln!(
                "\n!!!!! SKIPPED {what}: cannot mount a tmpfs ({e}); {SKIP_ENV}=1 lets it pass unchecked !!!!!\n"
            );
            None
        }
        Err(e) => panic!(
            "{what} needs a small tmpfs to fill up and cannot mount one: {e}\n\
             Run the tests as root (or where tmpfs mounts are allowed), or set {SKIP_ENV}=1 to skip this test."
        ),
    }
}

/// (total, available) bytes of the filesystem holding `path`.
pub fn fs_space(path: &Path) -> (u64, u64) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("a path without NUL");
    // SAFETY: statvfs writes into the zeroed struct we own; the path is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    assert_eq!(rc, 0, "statvfs({}) failed", path.display());
    let frsize = st.f_frsize as u64;
    (st.f_blocks as u64 * frsize, st.f_bavail as u64 * frsize)
}

/// Writes `path` with `len` bytes (or until the device is full, when `len` is `None`) and syncs it;
/// returns how much it wrote. Content is incompressible-looking, though tmpfs does not compress anyway.
pub fn fill_file(path: &Path, len: Option<u64>) -> u64 {
    let Ok(mut f) = File::create(path) else {
        return 0;
    };
    let chunk: Vec<u8> = (0..64u32 << 10)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut written = 0u64;
    loop {
        let want = match len {
            Some(l) if written >= l => break,
            Some(l) => (l - written).min(chunk.len() as u64) as usize,
            None => chunk.len(),
        };
        match f.write(&chunk[..want]) {
            Ok(0) | Err(_) => break,
            Ok(n) => written += n as u64,
        }
    }
    let _ = f.sync_all();
    written
}

/// A path for a filler file inside `dir` (a helper so tests name theirs alike).
pub fn filler_path(dir: &Path) -> PathBuf {
    dir.join("filler.bin")
}
