//! The agent's own files: records of what it applied, and the files it
//! hands to dnsmasq.

use std::path::Path;
use std::{fs, io};

/// Writes `content` to `path` through a rename, so that no reader (dnsmasq,
/// an agent started again) sees it half written. The temporary name is a
/// dotfile, which dnsmasq's directory watch skips.
pub fn write_atomic(path: &Path, content: &[u8]) -> io::Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temporary = path.with_file_name(format!(".{name}.tmp"));
    fs::write(&temporary, content)?;
    fs::rename(&temporary, path)
}
