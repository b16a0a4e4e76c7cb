//! Named network namespaces, as `ip netns` keeps them: a file under
//! /run/netns bind-mounted on the namespace, so it outlives every process.

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where named namespaces live.
pub const NETNS_DIR: &str = "/run/netns";

/// The file of the namespace `name`; an absolute path is its own file (a
/// namespace a container runtime made, as a CNI call names it).
pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

pub fn exists(name: &str) -> bool {
    path(name).exists()
}

/// Every named namespace.
pub fn list() -> io::Result<Vec<String>> {
    match std::fs::read_dir(NETNS_DIR) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
        Ok(entries) => {
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect();
            names.sort();
            Ok(names)
        }
    }
}

fn nix(error: nix::Error) -> io::Error {
    io::Error::from_raw_os_error(error as i32)
}

/// Creates the namespace `name` unless it exists.
pub fn create(name: &str) -> io::Result<()> {
    let target = path(name);
    if target.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(NETNS_DIR)?;
    File::create(&target)?;
    // Namespaces belong to threads: a short-lived thread unshares and
    // leaves its namespace bound to the file.
    let bound = target.clone();
    let result = std::thread::spawn(move || -> io::Result<()> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(nix)?;
        mount(
            Some(Path::new("/proc/thread-self/ns/net")),
            &bound,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(nix)
    })
    .join()
    .map_err(|_| io::Error::other("namespace thread panicked"))?;
    if result.is_err() {
        let _ = std::fs::remove_file(&target);
    }
    result
}

/// Removes the namespace `name`; its links go with it. Absent is fine.
pub fn delete(name: &str) -> io::Result<()> {
    let target = path(name);
    if !target.exists() {
        return Ok(());
    }
    match umount2(&target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) => {}
        Err(e) => return Err(nix(e)),
    }
    std::fs::remove_file(&target)
}

/// Opens the namespace `name` for `setns`.
pub fn open(name: &str) -> io::Result<File> {
    File::open(path(name))
        .map_err(|e| io::Error::new(e.kind(), format!("network namespace {name}: {e}")))
}

/// Runs `f` on a thread inside the namespace `name` (the current one when
/// `None`) and returns its result.
pub fn run_in<T: Send + 'static>(
    name: Option<&str>,
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<T> {
    let file = name.map(open).transpose()?;
    std::thread::spawn(move || -> io::Result<T> {
        if let Some(file) = file {
            setns(file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(nix)?;
        }
        Ok(f())
    })
    .join()
    .map_err(|_| io::Error::other("namespace thread panicked"))?
}

/// A command that runs inside the namespace `name`.
pub fn command(name: &str, program: &str) -> io::Result<Command> {
    let file = open(name)?;
    let mut command = Command::new(program);
    // SAFETY: between fork and exec the child only calls setns(2), which is
    // async-signal-safe, on a descriptor opened before the fork.
    unsafe {
        command.pre_exec(move || setns(file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(nix));
    }
    Ok(command)
}

/// A command that runs inside the namespace `name` as `ip netns exec`
/// runs it: in a mount namespace of its own whose `/sys` is mounted afresh,
/// so that it shows the namespace's own interfaces (their MACs, their
/// names), as tools such as cloud-init read them there.
pub fn command_with_sys(name: &str, program: &str) -> io::Result<Command> {
    let file = open(name)?;
    let mut command = Command::new(program);
    // SAFETY: between fork and exec the child only makes system calls
    // (setns, unshare, mount, umount2) on a descriptor opened before the
    // fork and on paths short enough for nix to pass from the stack.
    unsafe {
        command.pre_exec(move || {
            setns(file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(nix)?;
            unshare(CloneFlags::CLONE_NEWNS).map_err(nix)?;
            // Nothing mounted here may leak back to the host's namespace.
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_SLAVE | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(nix)?;
            umount2("/sys", MntFlags::MNT_DETACH).map_err(nix)?;
            mount(
                Some("sysfs"),
                "/sys",
                Some("sysfs"),
                MsFlags::empty(),
                None::<&str>,
            )
            .map_err(nix)
        });
    }
    Ok(command)
}

/// The processes whose network namespace is `name`'s: those a lab leaves
/// behind in a namespace it takes away (a DHCP client, a server) are found
/// by the namespace itself, whatever wrote their pid files.
pub fn processes_in(name: &str) -> io::Result<Vec<i32>> {
    use std::os::unix::fs::MetadataExt;
    let namespace = std::fs::metadata(path(name))?;
    let key = (namespace.dev(), namespace.ino());
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        // A process that ended meanwhile is simply not there.
        if let Ok(meta) = std::fs::metadata(entry.path().join("ns/net"))
            && (meta.dev(), meta.ino()) == key
        {
            found.push(pid);
        }
    }
    Ok(found)
}

/// Writes sysctls inside one namespace from a thread that stays there, so
/// that a batch of links costs one thread, not one each. The thread ends
/// with the writer.
pub struct SysctlWriter {
    jobs: std::sync::Mutex<std::sync::mpsc::Sender<SysctlJob>>,
}

type SysctlJob = (String, String, tokio::sync::oneshot::Sender<io::Result<()>>);

impl SysctlWriter {
    /// A writer inside the namespace `name` (the current one when `None`).
    pub fn start(name: Option<&str>) -> io::Result<SysctlWriter> {
        let file = name.map(open).transpose()?;
        let (jobs, queue) = std::sync::mpsc::channel::<SysctlJob>();
        std::thread::Builder::new()
            .name("sysctl".into())
            .spawn(move || {
                let entered = match &file {
                    Some(file) => setns(file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(nix),
                    None => Ok(()),
                };
                for (key, value, reply) in queue {
                    let written = match &entered {
                        Ok(()) => std::fs::write(sysctl_file(&key), value),
                        Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                    };
                    let _ = reply.send(written);
                }
            })?;
        Ok(SysctlWriter {
            jobs: std::sync::Mutex::new(jobs),
        })
    }

    /// Sets `key` (dotted or slashed, under /proc/sys) to `value`.
    pub async fn write(&self, key: &str, value: &str) -> io::Result<()> {
        let (reply, written) = tokio::sync::oneshot::channel();
        let sent = (self.jobs.lock().unwrap_or_else(|e| e.into_inner())).send((
            key.to_string(),
            value.to_string(),
            reply,
        ));
        if sent.is_err() {
            return Err(io::Error::other("the sysctl thread is gone"));
        }
        written
            .await
            .map_err(|_| io::Error::other("the sysctl thread is gone"))?
    }
}

/// The file of the sysctl `key`. Interface names may hold dots, so a key
/// given with slashes is taken as it is.
fn sysctl_file(key: &str) -> String {
    match key.contains('/') {
        true => format!("/proc/sys/{key}"),
        false => format!("/proc/sys/{}", key.replace('.', "/")),
    }
}

/// Sets a sysctl under /proc/sys/net inside the namespace `name`.
pub fn sysctl(name: Option<&str>, key: &str, value: &str) -> io::Result<()> {
    let file = sysctl_file(key);
    let value = value.to_string();
    run_in(name, move || std::fs::write(&file, value))?
}

/// Reads a sysctl under /proc/sys inside the namespace `name`.
pub fn read_sysctl(name: Option<&str>, key: &str) -> io::Result<String> {
    let file = sysctl_file(key);
    run_in(name, move || std::fs::read_to_string(&file))?.map(|v| v.trim().to_string())
}
