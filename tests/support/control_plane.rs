//! A real Kubernetes control plane for the cluster tests — etcd,
//! kube-apiserver and kube-controller-manager, built by
//! `scripts/install-deps` and started by `scripts/control-plane` — one per
//! test binary, on first use. It is torn down when the test process ends,
//! however it ends: the script watches this process's pid.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The repository's root.
pub fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where `scripts/install-deps` put etcd, the control plane, kubectl and helm.
pub fn tools() -> PathBuf {
    if let Some(dir) = std::env::var_os("NEUTRINO_TOOLS") {
        return PathBuf::from(dir).join("bin");
    }
    let cache = std::env::var_os("XDG_CACHE_HOME").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache"),
        PathBuf::from,
    );
    cache.join("neutrino/tools/bin")
}

pub struct ControlPlane {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
}

/// This test binary's control plane, started on first use.
pub fn control_plane() -> &'static ControlPlane {
    static ONE: OnceLock<ControlPlane> = OnceLock::new();
    ONE.get_or_init(|| start("neutrino-control-plane", &[]))
}

/// A control plane that serves kubelets in network namespaces
/// (`scripts/control-plane up --for-nodes`, one at a time on a machine).
pub fn control_plane_for_nodes() -> &'static ControlPlane {
    static ONE: OnceLock<ControlPlane> = OnceLock::new();
    ONE.get_or_init(|| start("neutrino-control-plane-for-nodes", &["--for-nodes"]))
}

fn start(name: &str, options: &[&str]) -> ControlPlane {
    for program in [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kubectl",
        "helm",
    ] {
        assert!(
            tools().join(program).is_file(),
            "{} is missing: run scripts/install-deps, which builds the control plane",
            tools().join(program).display()
        );
    }
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let output = Command::new(repository().join("scripts/control-plane"))
        .arg("up")
        .arg("--dir")
        .arg(&dir)
        .arg("--watch")
        .arg(std::process::id().to_string())
        .args(options)
        .stdin(Stdio::null())
        .output()
        .expect("running scripts/control-plane");
    assert!(
        output.status.success(),
        "scripts/control-plane up failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    ControlPlane {
        kubeconfig: dir.join("admin.kubeconfig"),
        dir,
    }
}

/// A command's exit, stdout and stderr, as text.
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Self {
            ok: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// Runs `command` with `stdin` on its standard input.
pub fn run_with_stdin(command: &mut Command, stdin: &str) -> Run {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {:?}: {e}", command.get_program()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap().into()
}

impl ControlPlane {
    /// A tool from the tools cache, run as the cluster's admin unless the
    /// arguments name another kubeconfig.
    pub fn tool(&self, program: &str) -> Command {
        let mut command = Command::new(tools().join(program));
        command
            .env("KUBECONFIG", &self.kubeconfig)
            .current_dir(repository())
            .stdin(Stdio::null());
        command
    }

    /// Runs kubectl with `args`, feeding it `stdin`.
    pub fn kubectl_with(&self, args: &[&str], stdin: &str) -> Run {
        run_with_stdin(self.tool("kubectl").args(args), stdin)
    }

    pub fn kubectl(&self, args: &[&str]) -> Run {
        self.tool("kubectl").args(args).output().unwrap().into()
    }

    /// Runs kubectl and returns its stdout; a failure fails the test.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let run = self.kubectl(args);
        assert!(run.ok, "kubectl {}: {}", args.join(" "), run.stderr);
        run.stdout
    }

    pub fn helm(&self, args: &[&str]) -> Run {
        self.tool("helm").args(args).output().unwrap().into()
    }

    /// A kubeconfig file for the same server that authenticates with `token`.
    pub fn kubeconfig_for_token(&self, name: &str, token: &str) -> PathBuf {
        let admin = std::fs::read_to_string(&self.kubeconfig).unwrap();
        let server = admin
            .lines()
            .find_map(|l| l.trim().strip_prefix("server: "))
            .expect("the admin kubeconfig names its server");
        let path = self.dir.join(format!("{name}.kubeconfig"));
        let ca = self.dir.join("pki/ca.crt");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: neutrino\n  cluster:\n    server: {server}\n    certificate-authority: {}\nusers:\n- name: {name}\n  user:\n    token: {token}\ncontexts:\n- name: neutrino\n  context: {{cluster: neutrino, user: {name}}}\ncurrent-context: neutrino\n",
                ca.display()
            ),
        )
        .unwrap();
        path
    }

    /// The pid of one of its processes (`etcd`, `kube-apiserver`, …).
    pub fn pid(&self, component: &str) -> i32 {
        std::fs::read_to_string(self.dir.join("pids").join(component))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Kills one of its processes with SIGKILL, as a crash would.
    pub fn kill(&self, component: &str) {
        use nix::sys::signal::{Signal, kill};
        kill(
            nix::unistd::Pid::from_raw(self.pid(component)),
            Signal::SIGKILL,
        )
        .unwrap();
    }

    /// Starts a killed component again on its ports and data, and waits
    /// until the API server answers ready.
    pub fn restart(&self, component: &str) {
        let output = Command::new(repository().join("scripts/control-plane"))
            .args(["restart", component, "--dir"])
            .arg(&self.dir)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "restarting {component}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        for _ in 0..600 {
            if self.kubectl(&["get", "--raw", "/readyz"]).ok {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("the API server is not ready 60 s after {component} came back");
    }
}
