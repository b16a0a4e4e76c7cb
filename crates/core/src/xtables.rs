//! Which iptables the host uses, what of neutrino's rules a table holds,
//! and how to take neutrino's rules out: all decided from `iptables-save`
//! text.
//!
//! A host has two iptables backends, nf_tables and legacy x_tables, and a
//! packet passes both; rules written through the wrong one are not seen by
//! the host's own tools and silently fight the rules it has. The agent uses
//! whichever the host already uses, decided as Kubernetes' iptables-wrapper
//! for kube-proxy decides it: kubelet's marker chains first, then whichever
//! backend holds more rules.

use std::collections::BTreeMap;
use std::fmt;
use std::fmt::Write;
use std::str::FromStr;

use super::names::is_our_chain as ours;

/// An iptables backend, named as its tools are (`iptables-nft-restore`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Nft,
    Legacy,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Self::Nft => "nft",
            Self::Legacy => "legacy",
        }
    }

    pub fn other(self) -> Self {
        match self {
            Self::Nft => Self::Legacy,
            Self::Legacy => Self::Nft,
        }
    }

    /// The program for `tool` (`save` or `restore`) of this backend.
    pub fn program(self, v6: bool, tool: &str) -> String {
        let family = if v6 { "ip6tables" } else { "iptables" };
        format!("{family}-{}-{tool}", self.name())
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the operator asks for: a backend, or the host's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    Auto,
    Fixed(Backend),
}

impl FromStr for Choice {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "auto" => Ok(Self::Auto),
            "nft" => Ok(Self::Fixed(Backend::Nft)),
            "legacy" => Ok(Self::Fixed(Backend::Legacy)),
            _ => Err(format!(
                "iptables backend {text:?}: write auto, nft or legacy"
            )),
        }
    }
}

/// Chains kubelet creates in the backend the node uses.
const KUBELET_MARKERS: [&str; 2] = ["KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY"];

fn declares(saved: &str, chain: &str) -> bool {
    saved
        .lines()
        .filter_map(|l| l.strip_prefix(':'))
        .any(|l| l.split_whitespace().next() == Some(chain))
}

/// Rules in `saved` that are not neutrino's: ours must not vote, or the
/// backend an earlier run chose would keep itself chosen.
fn foreign_rules(saved: &str) -> usize {
    saved
        .lines()
        .filter(|l| l.starts_with("-A "))
        .filter(|l| !l.split_whitespace().any(ours))
        .count()
}

/// The backend the host uses, from both backends' `iptables-save` and
/// `ip6tables-save` output (concatenated; empty where a backend is
/// missing), and why.
pub fn detect(nft: &str, legacy: &str) -> (Backend, String) {
    for marker in KUBELET_MARKERS {
        if declares(nft, marker) {
            return (Backend::Nft, format!("kubelet's {marker} chain is in nft"));
        }
        if declares(legacy, marker) {
            return (
                Backend::Legacy,
                format!("kubelet's {marker} chain is in legacy"),
            );
        }
    }
    let (n, l) = (foreign_rules(nft), foreign_rules(legacy));
    if l > n {
        (
            Backend::Legacy,
            format!("legacy holds {l} of the host's rules, nft {n}"),
        )
    } else {
        (
            Backend::Nft,
            format!("nft holds {n} of the host's rules, legacy {l}"),
        )
    }
}

/// Whether `saved` holds any neutrino chain.
pub fn holds_ours(saved: &str) -> bool {
    saved
        .lines()
        .filter_map(|l| l.strip_prefix(':'))
        .filter_map(|l| l.split_whitespace().next())
        .any(ours)
}

/// One table's part of [`removal`].
fn remove_from(
    out: &mut String,
    table: Option<&str>,
    jumps: &mut Vec<String>,
    chains: &mut Vec<String>,
) {
    if let Some(table) = table
        && !chains.is_empty()
    {
        let _ = writeln!(out, "*{table}");
        for jump in jumps.iter() {
            let _ = writeln!(out, "-D {jump}");
        }
        // Flushed first: our chains jump to each other.
        for chain in chains.iter() {
            let _ = writeln!(out, "-F {chain}");
        }
        for chain in chains.iter() {
            let _ = writeln!(out, "-X {chain}");
        }
        out.push_str("COMMIT\n");
    }
    jumps.clear();
    chains.clear();
}

/// `iptables-restore --noflush` input that takes every neutrino chain out
/// of the tables in `saved`, and the jumps into them from the host's
/// chains; nothing else is touched. Empty when there is nothing of ours.
pub fn removal(saved: &str) -> String {
    let mut out = String::new();
    let mut table: Option<&str> = None;
    let mut jumps = Vec::new();
    let mut chains = Vec::new();
    for line in saved.lines() {
        if let Some(name) = line.strip_prefix('*') {
            remove_from(&mut out, table, &mut jumps, &mut chains);
            table = Some(name);
        } else if let Some(chain) = line.strip_prefix(':') {
            let name = chain.split_whitespace().next().unwrap_or_default();
            if ours(name) {
                chains.push(name.to_string());
            }
        } else if let Some(rule) = line.strip_prefix("-A ") {
            let chain = rule.split_whitespace().next().unwrap_or_default();
            let target = rule
                .split_whitespace()
                .skip_while(|w| *w != "-j" && *w != "-g")
                .nth(1);
            if !ours(chain) && target.is_some_and(ours) {
                jumps.push(rule.to_string());
            }
        }
    }
    remove_from(&mut out, table, &mut jumps, &mut chains);
    out
}

/// neutrino's part of a table dump, keyed `TABLE CHAIN`: the rules of each
/// of its chains, and, under the host chain's key, the host's rules that
/// jump into them. Lines are as `iptables-save` prints them.
pub type Ours = BTreeMap<String, Vec<String>>;

fn jump_target(rule: &str) -> Option<&str> {
    rule.split_whitespace()
        .skip_while(|w| *w != "-j" && *w != "-g")
        .nth(1)
}

/// neutrino's chains and the jumps into them in `saved`.
pub fn ours_in(saved: &str) -> Ours {
    let mut out = Ours::new();
    let mut table = "";
    for line in saved.lines() {
        if let Some(name) = line.strip_prefix('*') {
            table = name;
        } else if let Some(chain) = line.strip_prefix(':') {
            let name = chain.split_whitespace().next().unwrap_or_default();
            if ours(name) {
                out.entry(format!("{table} {name}")).or_default();
            }
        } else if let Some(rule) = line.strip_prefix("-A ") {
            let chain = rule.split_whitespace().next().unwrap_or_default();
            if ours(chain) || jump_target(rule).is_some_and(ours) {
                out.entry(format!("{table} {chain}"))
                    .or_default()
                    .push(line.to_string());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:DOCKER - [0:0]\n\
        -A FORWARD -j DOCKER\n-A DOCKER -d 172.17.0.2/32 -j ACCEPT\nCOMMIT\n";
    const OURS: &str = "*raw\n:PREROUTING ACCEPT [0:0]\n:neutrino-ZONES - [0:0]\n\
        -A PREROUTING -j neutrino-ZONES\n-A neutrino-ZONES -i ntb-1 -j CT --zone 7\nCOMMIT\n\
        *filter\n:FORWARD ACCEPT [0:0]\n:neutrino-FORWARD - [0:0]\n:nt-i-1 - [0:0]\n:KEEP - [0:0]\n\
        -A FORWARD -m physdev --physdev-is-bridged -j neutrino-FORWARD\n\
        -A FORWARD -s 10.9.9.9/32 -j KEEP\n\
        -A neutrino-FORWARD -m physdev --physdev-out ntp-1 --physdev-is-bridged -j nt-i-1\n\
        -A nt-i-1 -j DROP\nCOMMIT\n";

    #[test]
    fn kubelets_marker_decides_first() {
        let hint = "*mangle\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n";
        assert_eq!(detect(hint, HOST).0, Backend::Nft);
        assert_eq!(
            detect(HOST, hint),
            (
                Backend::Legacy,
                "kubelet's KUBE-IPTABLES-HINT chain is in legacy".into()
            )
        );
    }

    #[test]
    fn else_the_backend_with_more_of_the_hosts_rules() {
        assert_eq!(
            detect("", HOST),
            (
                Backend::Legacy,
                "legacy holds 2 of the host's rules, nft 0".into()
            )
        );
        assert_eq!(detect(HOST, "").0, Backend::Nft);
        // A fresh host: nft, the default of every current distribution.
        assert_eq!(detect("", "").0, Backend::Nft);
        // Our own rules do not vote: only the one KEEP rule counts.
        assert_eq!(
            detect(OURS, HOST),
            (
                Backend::Legacy,
                "legacy holds 2 of the host's rules, nft 1".into()
            )
        );
    }

    #[test]
    fn removal_takes_out_our_chains_and_jumps_only() {
        assert_eq!(
            removal(OURS),
            "*raw\n-D PREROUTING -j neutrino-ZONES\n-F neutrino-ZONES\n-X neutrino-ZONES\nCOMMIT\n\
             *filter\n-D FORWARD -m physdev --physdev-is-bridged -j neutrino-FORWARD\n\
             -F neutrino-FORWARD\n-F nt-i-1\n-X neutrino-FORWARD\n-X nt-i-1\nCOMMIT\n"
        );
        assert!(holds_ours(OURS));
        assert!(!holds_ours(HOST));
        assert_eq!(removal(HOST), "");
    }

    #[test]
    fn ours_is_our_chains_and_the_jumps_into_them() {
        let found = ours_in(OURS);
        let keys: Vec<&str> = found.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "filter FORWARD",
                "filter neutrino-FORWARD",
                "filter nt-i-1",
                "raw PREROUTING",
                "raw neutrino-ZONES"
            ]
        );
        assert_eq!(
            found["filter FORWARD"],
            ["-A FORWARD -m physdev --physdev-is-bridged -j neutrino-FORWARD"],
            "the host's own rule in FORWARD is not ours"
        );
    }

    #[test]
    fn choices_parse() {
        assert_eq!("auto".parse(), Ok(Choice::Auto));
        assert_eq!("legacy".parse(), Ok(Choice::Fixed(Backend::Legacy)));
        let error = "iptables".parse::<Choice>().unwrap_err();
        assert_eq!(
            error,
            "iptables backend \"iptables\": write auto, nft or legacy"
        );
        assert_eq!(
            Backend::Legacy.program(true, "save"),
            "ip6tables-legacy-save"
        );
    }
}
