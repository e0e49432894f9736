//! Container identity from a cgroup path (containerd, CRI-O, Docker, Podman, kubepods).
//!
//! Recognised shapes (systemd and cgroupfs drivers):
//! `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid>.slice/cri-containerd-<id>.scope`,
//! `/kubepods/burstable/pod<uid>/<id>`, `/system.slice/docker-<id>.scope`, `/docker/<id>`,
//! `.../crio-<id>.scope`, `.../libpod-<id>.scope`, `...slice:cri-containerd:<id>`.

/// What a cgroup path says about the container a process runs in.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerRef {
    /// `runtime://id`, as Tetragon's `pod.container.id`.
    pub id: String,
    /// The bare 64-hex id.
    pub bare_id: String,
    /// Kubernetes pod UID, when the path is under kubepods.
    pub pod_uid: Option<String>,
}

fn hex64_at(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    if b.len() < 64 {
        return None;
    }
    (0..=b.len() - 64).find_map(|i| {
        let w = &b[i..i + 64];
        let bounded =
            (i == 0 || !b[i - 1].is_ascii_hexdigit()) && (i + 64 == b.len() || !b[i + 64].is_ascii_hexdigit());
        (bounded && w.iter().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))).then(|| &s[i..i + 64])
    })
}

/// Parses a cgroup path; None when it names no container.
pub fn from_cgroup_path(path: &str) -> Option<ContainerRef> {
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let kube = comps.iter().any(|c| c.starts_with("kubepods"));
    let (idx, id) = comps.iter().enumerate().rev().find_map(|(i, c)| hex64_at(c).map(|id| (i, id)))?;
    let comp = comps[idx];
    let runtime = if comp.contains("cri-containerd") || comp.contains("containerd") {
        "containerd"
    } else if comp.contains("crio") {
        "cri-o"
    } else if comp.contains("libpod") {
        "podman"
    } else if comp.starts_with("docker") || comps.iter().take(idx).any(|c| *c == "docker" || c.starts_with("docker")) {
        "docker"
    } else if kube {
        "containerd"
    } else {
        "docker"
    };
    let pod_uid = comps.iter().take(idx + 1).find_map(|c| {
        let p = c.rfind("pod")?;
        let rest = &c[p + 3..];
        let rest = rest.strip_suffix(".slice").unwrap_or(rest);
        let rest = rest.split(':').next().unwrap_or(rest);
        let uid = rest.replace('_', "-");
        (uid.len() == 36 && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')).then_some(uid)
    });
    Some(ContainerRef { id: format!("{runtime}://{id}"), bare_id: id.to_owned(), pod_uid })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "551e161c47d8ff0eb665438a7bcd5b4e3ef5a297282b40a92b7c77d6bd168eb3";

    #[test]
    fn shapes() {
        let cases = [
            (
                format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0b5a4c6e_8f0c_4c57_9a3e_1f2a3b4c5d6e.slice/cri-containerd-{ID}.scope"),
                "containerd",
                Some("0b5a4c6e-8f0c-4c57-9a3e-1f2a3b4c5d6e"),
            ),
            (format!("/kubepods/burstable/pod0b5a4c6e-8f0c-4c57-9a3e-1f2a3b4c5d6e/{ID}"), "containerd", Some("0b5a4c6e-8f0c-4c57-9a3e-1f2a3b4c5d6e")),
            (format!("/system.slice/docker-{ID}.scope"), "docker", None),
            (format!("/docker/{ID}"), "docker", None),
            (format!("/kubepods.slice/kubepods-pod0b5a4c6e_8f0c_4c57_9a3e_1f2a3b4c5d6e.slice/crio-{ID}.scope"), "cri-o", Some("0b5a4c6e-8f0c-4c57-9a3e-1f2a3b4c5d6e")),
            (format!("/machine.slice/libpod-{ID}.scope/container"), "podman", None),
        ];
        for (path, runtime, pod) in cases {
            let c = from_cgroup_path(&path).unwrap_or_else(|| panic!("{path}"));
            assert_eq!(c.id, format!("{runtime}://{ID}"), "{path}");
            assert_eq!(c.pod_uid.as_deref(), pod, "{path}");
        }
    }

    #[test]
    fn not_containers() {
        for p in ["/", "/user.slice/user-0.slice/session-3.scope", "/system.slice/ssh.service", ""] {
            assert_eq!(from_cgroup_path(p), None, "{p}");
        }
        // 65 hex digits is not an id
        assert_eq!(from_cgroup_path(&format!("/docker/{ID}a")), None);
    }
}
