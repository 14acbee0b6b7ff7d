//! What the peer pods run with beyond the daemons' own settings: the private network's swarm key
//! (`spec.swarmKeyRef`) and the user and groups of the pods (`spec.podSecurityContext`). Here
//! also the swarm key's file format, which local mode writes and Kubernetes mode checks.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// UID and GID of the `ipfs` user in the official Kubo and IPFS Cluster images: the pods' default
/// `runAsUser`, `runAsGroup` and `fsGroup`.
pub const DEFAULT_POD_ID: i64 = 1000;
/// Default key of the swarm key in the Secret `spec.swarmKeyRef` names (Kubo's file name).
pub const DEFAULT_SWARM_KEY_KEY: &str = "swarm.key";
/// First line of a swarm key file (libp2p pre-shared key, version 1).
const SWARM_KEY_HEADER: &str = "/key/swarm/psk/1.0.0/";
/// Second line of a swarm key file: the key's encoding.
const SWARM_KEY_BASE16: &str = "/base16/";

/// A libp2p swarm key held in a Secret of the IpfsCluster's namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SwarmKeyReference {
    /// Name of the Secret, in the namespace of the IpfsCluster.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,

    /// Key within the Secret. Default `swarm.key`.
    #[serde(default = "default_swarm_key_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

fn default_swarm_key_key() -> String {
    DEFAULT_SWARM_KEY_KEY.to_owned()
}

/// The Kubo swarm key file of a 32-byte key given as 64 hex digits: the three lines Kubo reads
/// from `$IPFS_PATH/swarm.key` (the format `ipfs-swarm-key-gen` writes).
pub fn swarm_key_text(hex: &str) -> String {
    format!("{SWARM_KEY_HEADER}\n{SWARM_KEY_BASE16}\n{hex}\n")
}

/// Checks that `file` is a swarm key as Kubo reads it: the lines `/key/swarm/psk/1.0.0/`,
/// `/base16/` and 64 hex digits (32 bytes). The error says what is wrong without quoting the key.
pub fn check_swarm_key(file: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(file).map_err(|_| "is not text".to_owned())?;
    let mut lines = text.lines().map(|l| l.trim_end_matches('\r'));
    if lines.next() != Some(SWARM_KEY_HEADER) {
        return Err(format!("does not start with the line `{SWARM_KEY_HEADER}`"));
    }
    if lines.next() != Some(SWARM_KEY_BASE16) {
        return Err(format!(
            "has no second line `{SWARM_KEY_BASE16}` (the hex encoding the operator supports)"
        ));
    }
    let key = lines.next().unwrap_or_default();
    if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("has no third line of 64 hex digits (a 32-byte key)".into());
    }
    if lines.any(|l| !l.trim().is_empty()) {
        return Err("has more than three lines".into());
    }
    Ok(())
}

/// The user and groups the peer pods run as.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!self.omitIds || (!has(self.runAsUser) && !has(self.runAsGroup) && !has(self.fsGroup))")
    .message("spec.podSecurityContext.omitIds: true leaves the user and groups to the platform: remove runAsUser, runAsGroup and fsGroup")
    .field_path(".omitIds"))]
pub struct PodSecurityContextSpec {
    /// UID of every container of the peer pods. Default 1000, the `ipfs` user of the official
    /// Kubo and IPFS Cluster images. Never 0: the pods always run with `runAsNonRoot: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 2147483647))]
    pub run_as_user: Option<i64>,

    /// Primary GID of every container of the peer pods. Default 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 2147483647))]
    pub run_as_group: Option<i64>,

    /// Group that owns the peers' volumes (the daemons must write them). Default 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 2147483647))]
    pub fs_group: Option<i64>,

    /// Leave `runAsUser`, `runAsGroup` and `fsGroup` out of the pods, so that the platform
    /// assigns them (OpenShift's `restricted-v2` SCC picks them from the namespace's range and
    /// refuses pods that name others). Then the fields above must be unset. Elsewhere the images
    /// must then run as a numeric non-root user (the official images start as root and are
    /// refused under `runAsNonRoot`), and the volumes must be writable by it. Default false.
    #[serde(default)]
    pub omit_ids: bool,
}

/// The ids a pod runs with (`None` when the platform assigns them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PodIds {
    pub run_as_user: i64,
    pub run_as_group: i64,
    pub fs_group: i64,
}

impl PodSecurityContextSpec {
    /// The ids to put in the pods, defaults filled in; `None` with `omitIds`.
    pub fn ids(&self) -> Option<PodIds> {
        (!self.omit_ids).then(|| PodIds {
            run_as_user: self.run_as_user.unwrap_or(DEFAULT_POD_ID),
            run_as_group: self.run_as_group.unwrap_or(DEFAULT_POD_ID),
            fs_group: self.fs_group.unwrap_or(DEFAULT_POD_ID),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swarm_key_files_are_checked_without_quoting_the_key() {
        assert_eq!(
            swarm_key_text("ab"),
            "/key/swarm/psk/1.0.0/\n/base16/\nab\n"
        );
        let good = swarm_key_text(&"0f".repeat(32));
        assert_eq!(check_swarm_key(good.as_bytes()), Ok(()));
        assert_eq!(
            check_swarm_key(good.trim_end().replace('\n', "\r\n").as_bytes()),
            Ok(())
        );
        let bare = "0f".repeat(32);
        let err = check_swarm_key(bare.as_bytes()).expect_err("no header");
        assert!(err.contains("/key/swarm/psk/1.0.0/"), "{err}");
        assert!(!err.contains(&bare), "{err}");
        let base64 =
            "/key/swarm/psk/1.0.0/\n/base64/\nDw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8PDw8=\n";
        assert!(check_swarm_key(base64.as_bytes()).is_err());
        let short = swarm_key_text("abcd");
        let err = check_swarm_key(short.as_bytes()).expect_err("short");
        assert!(err.contains("64 hex digits"), "{err}");
        let extra = format!("{good}more\n");
        assert!(check_swarm_key(extra.as_bytes()).is_err());
        assert!(check_swarm_key(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn pod_ids_default_to_the_images_user_and_are_omitted_on_request() {
        let default = PodSecurityContextSpec::default();
        let ids = default.ids().expect("ids by default");
        assert_eq!(
            (ids.run_as_user, ids.run_as_group, ids.fs_group),
            (1000, 1000, 1000)
        );
        let own = PodSecurityContextSpec {
            run_as_user: Some(2000),
            fs_group: Some(3000),
            ..Default::default()
        };
        let ids = own.ids().expect("ids");
        assert_eq!(
            (ids.run_as_user, ids.run_as_group, ids.fs_group),
            (2000, 1000, 3000)
        );
        let omitted = PodSecurityContextSpec {
            omit_ids: true,
            ..Default::default()
        };
        assert_eq!(omitted.ids(), None);
    }
}
