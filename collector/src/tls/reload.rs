//! Values read from files and read again when the files change: certificates, keys, CA bundles, token
//! and htpasswd files.
//!
//! A change is seen by comparing each file's (inode, size, mtime) with what was last read, at most once
//! per `interval`, on the caller's path (a handshake, a request): no watcher thread, and a file replaced
//! by rename (how certificate tools and Kubernetes update secrets) is seen like one rewritten in place.
//! A read that fails (a file half written, a new certificate next to the old key) keeps the previous value
//! in use and is tried again at the next check, so a rotation done as two separate writes settles once
//! both are in place. Existing users of the old value (open connections) are not affected: they hold
//! their own `Arc`.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

type Loader<T> = Box<dyn Fn() -> Result<T, String> + Send + Sync>;
type Observer<T> = Box<dyn Fn(&T) + Send + Sync>;

#[derive(Clone, PartialEq, Eq, Debug)]
struct Stamp(Vec<Option<(u64, u64, SystemTime)>>);

fn stamp(files: &[PathBuf]) -> Stamp {
    Stamp(
        files
            .iter()
            .map(|f| {
                std::fs::metadata(f).ok().map(|m| {
                    (
                        m.ino(),
                        m.len(),
                        m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    )
                })
            })
            .collect(),
    )
}

struct State<T> {
    current: Arc<T>,
    stamp: Stamp,
    checked: Instant,
    /// The last failure logged, so a file that stays broken is reported once, not every second.
    last_error: Option<String>,
}

/// A value loaded from `files`, reloaded when they change. See the module docs.
pub struct Reloading<T> {
    what: String,
    files: Vec<PathBuf>,
    interval: Duration,
    load: Loader<T>,
    on_load: Option<Observer<T>>,
    on_result: Option<Box<dyn Fn(bool) + Send + Sync>>,
    // A std Mutex: held only to compare stamps (and, rarely, to swap the value); never across an await.
    state: Mutex<State<T>>,
}

impl<T> Reloading<T> {
    /// Loads the value now; the error (naming the file) is returned if that fails. `what` names the
    /// value in logs (never its content).
    pub fn new(
        what: impl Into<String>,
        files: Vec<PathBuf>,
        interval: Duration,
        load: impl Fn() -> Result<T, String> + Send + Sync + 'static,
    ) -> Result<Self, String> {
        let before = stamp(&files);
        let value = load()?;
        Ok(Self {
            what: what.into(),
            files,
            interval,
            load: Box::new(load),
            on_load: None,
            on_result: None,
            state: Mutex::new(State {
                current: Arc::new(value),
                stamp: before,
                checked: Instant::now(),
                last_error: None,
            }),
        })
    }

    /// Called with every value loaded (the first included): metrics such as a certificate's expiry.
    pub fn observe(mut self, f: impl Fn(&T) + Send + Sync + 'static) -> Self {
        f(&self.state.lock().expect("not poisoned").current);
        self.on_load = Some(Box::new(f));
        self
    }

    /// Called after every reload attempt with whether it succeeded.
    pub fn on_reload(mut self, f: impl Fn(bool) + Send + Sync + 'static) -> Self {
        self.on_result = Some(Box::new(f));
        self
    }

    /// The current value, reloading it first if the interval has passed and a file changed.
    pub fn current(&self) -> Arc<T> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.checked.elapsed() >= self.interval {
            state.checked = Instant::now();
            let now = stamp(&self.files);
            if now != state.stamp {
                match (self.load)() {
                    Ok(value) => {
                        if let Some(f) = &self.on_load {
                            f(&value);
                        }
                        state.current = Arc::new(value);
                        state.stamp = now;
                        state.last_error = None;
                        tracing::info!(what = %self.what, "reloaded after its files changed");
                        if let Some(f) = &self.on_result {
                            f(true);
                        }
                    }
                    Err(e) => {
                        if state.last_error.as_deref() != Some(e.as_str()) {
                            tracing::warn!(
                                what = %self.what,
                                error = %e,
                                "files changed but cannot be used; keeping the previous ones"
                            );
                            if let Some(f) = &self.on_result {
                                f(false);
                            }
                            state.last_error = Some(e);
                        }
                    }
                }
            }
        }
        state.current.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reloads_on_change_and_keeps_the_old_value_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v");
        std::fs::write(&path, "1").unwrap();
        let p = path.clone();
        let r = Reloading::new("test", vec![path.clone()], Duration::ZERO, move || {
            let text = std::fs::read_to_string(&p).map_err(|e| e.to_string())?;
            text.trim().parse::<u32>().map_err(|e| e.to_string())
        })
        .unwrap();
        assert_eq!(*r.current(), 1);
        // Replaced by rename, as rotation tools do.
        let tmp = dir.path().join("v.tmp");
        std::fs::write(&tmp, "22").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert_eq!(*r.current(), 22);
        std::fs::write(&path, "not a number").unwrap();
        assert_eq!(*r.current(), 22, "a broken file keeps the previous value");
        std::fs::write(&path, "333").unwrap();
        assert_eq!(*r.current(), 333);
    }
}
