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

/// Sets a sysctl under /proc/sys/net inside the namespace `name`.
pub fn sysctl(name: Option<&str>, key: &str, value: &str) -> io::Result<()> {
    let file = format!("/proc/sys/{}", key.replace('.', "/"));
    let value = value.to_string();
    run_in(name, move || std::fs::write(&file, value))?
}

/// Reads a sysctl under /proc/sys inside the namespace `name`.
pub fn read_sysctl(name: Option<&str>, key: &str) -> io::Result<String> {
    let file = format!("/proc/sys/{}", key.replace('.', "/"));
    run_in(name, move || std::fs::read_to_string(&file))?.map(|v| v.trim().to_string())
}
