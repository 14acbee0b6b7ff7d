//! Step `secret`: the cluster secret exists before the peers need it. A Secret the spec names
//! (`spec.cluster.secretRef`) is checked; otherwise the operator generates one (32 random bytes,
//! hex) owned by the IpfsCluster. The swarm key's Secret (`spec.swarmKeyRef`) is checked too: the
//! peers' Kubo do not start without it. No value is ever logged or quoted.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tracing::info;

use super::build::{self, BuildError, Names};
use super::context::{Context, KubeCallError, kube_err};
use crate::api::{
    IpfsCluster, SecretKeyReference as SecretKeyRef, SwarmKeyReference, check_swarm_key,
};

/// Why the cluster secret could not be made sure of.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(transparent)]
    Call(#[from] KubeCallError),
    #[error("IpfsCluster {cluster}: Secret {name} key `{key}` {problem}")]
    Invalid {
        cluster: String,
        name: String,
        key: String,
        problem: String,
    },
    #[error("generating a cluster secret: reading /dev/urandom: {0}")]
    Random(#[source] std::io::Error),
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// Makes sure the cluster secret exists and checks the swarm key's Secret. Returns the problems
/// to report in status (a named Secret missing or malformed: the user's to fix, not retried as
/// an error), each also a Warning Event.
pub async fn ensure(
    cluster: &IpfsCluster,
    names: &Names,
    ns: &str,
    ctx: &Context,
) -> Result<Vec<String>, SecretError> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let mut problems = Vec::new();
    if let Some(problem) = ensure_cluster_secret(cluster, names, ns, &api, ctx).await? {
        ctx.event(
            cluster,
            EventType::Warning,
            "ClusterSecretInvalid",
            problem.clone(),
        )
        .await;
        problems.push(problem);
    }
    if let Some(named) = &cluster.spec.swarm_key_ref {
        let secret = read(cluster, &api, &named.name).await?;
        if let Some(problem) = swarm_key_problem(secret.as_ref(), named, ns) {
            ctx.event(
                cluster,
                EventType::Warning,
                "SwarmKeyInvalid",
                problem.clone(),
            )
            .await;
            problems.push(problem);
        }
    }
    Ok(problems)
}

/// Makes sure the cluster secret exists: generated, or the one `spec.cluster.secretRef` names
/// (then what is wrong with it, if anything).
async fn ensure_cluster_secret(
    cluster: &IpfsCluster,
    names: &Names,
    ns: &str,
    api: &Api<Secret>,
    ctx: &Context,
) -> Result<Option<String>, SecretError> {
    let Some(named) = &cluster.spec.cluster.secret_ref else {
        ensure_generated(cluster, names, api, ctx).await?;
        return Ok(None);
    };
    remove_generated(cluster, names, api).await?;
    let secret = read(cluster, api, &named.name).await?;
    Ok(named_secret_problem(secret.as_ref(), named, ns))
}

/// The Secret `name`, if it exists.
async fn read(
    cluster: &IpfsCluster,
    api: &Api<Secret>,
    name: &str,
) -> Result<Option<Secret>, KubeCallError> {
    api.get_opt(name)
        .await
        .map_err(kube_err(&cluster.name_any(), "reading", "Secret", name))
}

/// What is wrong with the Secret `spec.swarmKeyRef` names, if anything (never quoting the key).
fn swarm_key_problem(
    secret: Option<&Secret>,
    named: &SwarmKeyReference,
    ns: &str,
) -> Option<String> {
    let Some(secret) = secret else {
        return Some(format!(
            "spec.swarmKeyRef: Secret {} does not exist in namespace {ns}: the peers' Kubo \
             cannot start without it; create it with key `{}` holding a swarm key (the lines \
             `/key/swarm/psk/1.0.0/`, `/base16/` and 64 hex digits)",
            named.name, named.key
        ));
    };
    match secret.data.as_ref().and_then(|d| d.get(&named.key)) {
        None => Some(format!(
            "spec.swarmKeyRef: Secret {} has no key `{}`: the peers' Kubo cannot start without it",
            named.name, named.key
        )),
        Some(v) => check_swarm_key(&v.0).err().map(|problem| {
            format!(
                "spec.swarmKeyRef: Secret {} key `{}` {problem}: a swarm key is the lines \
                 `/key/swarm/psk/1.0.0/`, `/base16/` and 64 hex digits",
                named.name, named.key
            )
        }),
    }
}

/// What is wrong with the Secret `spec.cluster.secretRef` names, if anything.
fn named_secret_problem(secret: Option<&Secret>, named: &SecretKeyRef, ns: &str) -> Option<String> {
    let Some(secret) = secret else {
        return Some(format!(
            "spec.cluster.secretRef: Secret {} does not exist in namespace {ns}: create it with \
             key `{}` holding 64 hex digits",
            named.name, named.key
        ));
    };
    match secret.data.as_ref().and_then(|d| d.get(&named.key)) {
        None => Some(format!(
            "spec.cluster.secretRef: Secret {} has no key `{}`",
            named.name, named.key
        )),
        Some(v) if !build::is_valid_cluster_secret(v.0.trim_ascii()) => Some(format!(
            "spec.cluster.secretRef: Secret {} key `{}` is not 64 hex digits (32 bytes); \
             generate one with `od -vN 32 -An -tx1 /dev/urandom | tr -d ' \\n'`",
            named.name, named.key
        )),
        Some(_) => None,
    }
}

/// A generated Secret left from before `secretRef` was set is an orphan: deleted.
async fn remove_generated(
    cluster: &IpfsCluster,
    names: &Names,
    api: &Api<Secret>,
) -> Result<(), KubeCallError> {
    let name = cluster.name_any();
    let generated = &names.generated_secret;
    let owner_uid = cluster.meta().uid.clone().unwrap_or_default();
    let old = api
        .get_opt(generated)
        .await
        .map_err(kube_err(&name, "reading", "Secret", generated))?;
    if old.is_some_and(|s| s.owner_references().iter().any(|o| o.uid == owner_uid)) {
        api.delete(generated, &DeleteParams::background())
            .await
            .map_err(kube_err(&name, "deleting", "Secret", generated))?;
    }
    Ok(())
}

/// How long a generated Secret found in order is not looked at again (unless the spec changes):
/// one read per cluster per half minute instead of one per reconcile. A Secret deleted by hand
/// is recreated within it.
pub const GENERATED_RECHECK: Duration = Duration::from_secs(30);

/// When each cluster's generated Secret was last found in order (or created), at which
/// generation of the cluster.
#[derive(Debug, Default)]
pub struct Checked(Mutex<CheckedAt>);

/// Per cluster: its generation and the moment its generated Secret was found in order.
type CheckedAt = HashMap<ObjectRef<IpfsCluster>, (Option<i64>, Instant)>;

impl Checked {
    fn lock(&self) -> std::sync::MutexGuard<'_, CheckedAt> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `cluster`'s generated Secret was found in order less than
    /// [`GENERATED_RECHECK`] ago, at the cluster's current generation.
    fn recent(&self, cluster: &IpfsCluster) -> bool {
        let key = ObjectRef::from_obj(cluster);
        self.lock().get(&key).is_some_and(|(generation, at)| {
            *generation == cluster.metadata.generation && at.elapsed() < GENERATED_RECHECK
        })
    }

    fn found(&self, cluster: &IpfsCluster) {
        let key = ObjectRef::from_obj(cluster);
        self.lock()
            .insert(key, (cluster.metadata.generation, Instant::now()));
    }

    /// Forgets a deleted cluster.
    pub fn forget(&self, cluster: &ObjectRef<IpfsCluster>) {
        self.lock().remove(cluster);
    }
}

/// Creates the generated Secret when missing; checks the one that exists (at most every
/// [`GENERATED_RECHECK`] while the spec does not change).
async fn ensure_generated(
    cluster: &IpfsCluster,
    names: &Names,
    api: &Api<Secret>,
    ctx: &Context,
) -> Result<(), SecretError> {
    if ctx.secrets_checked.recent(cluster) {
        return Ok(());
    }
    let name = cluster.name_any();
    let generated = &names.generated_secret;
    let existing = api
        .get_opt(generated)
        .await
        .map_err(kube_err(&name, "reading", "Secret", generated))?;
    if let Some(s) = existing {
        let valid = s
            .data
            .as_ref()
            .and_then(|d| d.get(build::SECRET_KEY))
            .is_some_and(|v| build::is_valid_cluster_secret(&v.0));
        if valid {
            ctx.secrets_checked.found(cluster);
            return Ok(());
        }
        return Err(SecretError::Invalid {
            cluster: name,
            name: generated.clone(),
            key: build::SECRET_KEY.into(),
            problem: "is missing or not 64 hex digits: delete the Secret and the operator \
                      generates a new one (running peers then need a restart)"
                .into(),
        });
    }
    let secret = build::generated_secret(cluster, names, &random_secret()?)?;
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => {
            ctx.secrets_checked.found(cluster);
            info!(cluster = %name, secret = %generated, "generated the cluster secret");
            let note = format!(
                "generated Secret {generated} holding the cluster secret (32 random bytes)"
            );
            ctx.event(cluster, EventType::Normal, "SecretGenerated", note)
                .await;
            Ok(())
        }
        // Created between our read and write (another reconcile): keep it.
        Err(kube::Error::Api(s)) if s.is_already_exists() => Ok(()),
        Err(e) => Err(kube_err(&name, "creating", "Secret", generated)(e).into()),
    }
}

/// 32 random bytes from the kernel, as 64 hex digits (an IPFS Cluster secret).
fn random_secret() -> Result<String, SecretError> {
    use std::io::Read;
    let mut buf = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(SecretError::Random)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn named() -> SecretKeyRef {
        SecretKeyRef {
            name: "shared".into(),
            key: "secret".into(),
        }
    }

    fn secret(key: &str, value: &[u8]) -> Secret {
        Secret {
            data: Some([(key.to_owned(), ByteString(value.to_vec()))].into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_named_secret_is_checked_with_a_message_that_names_the_field() {
        let missing = named_secret_problem(None, &named(), "team").expect("missing");
        assert!(
            missing.starts_with(
                "spec.cluster.secretRef: Secret shared does not exist in namespace team"
            ),
            "{missing}"
        );
        let no_key = named_secret_problem(Some(&secret("other", b"x")), &named(), "team");
        assert!(no_key.is_some_and(|m| m.contains("has no key `secret`")));
        let short = named_secret_problem(Some(&secret("secret", b"abcd")), &named(), "team");
        assert!(short.is_some_and(|m| m.contains("is not 64 hex digits")));
        let good = secret("secret", format!("{}\n", "ab".repeat(32)).as_bytes());
        assert_eq!(named_secret_problem(Some(&good), &named(), "team"), None);
    }

    #[test]
    fn a_swarm_key_secret_is_checked_with_a_message_naming_the_secret_and_key() {
        let named = SwarmKeyReference {
            name: "pnet".into(),
            key: "swarm.key".into(),
        };
        let missing = swarm_key_problem(None, &named, "team").expect("missing");
        assert!(
            missing.starts_with("spec.swarmKeyRef: Secret pnet does not exist in namespace team"),
            "{missing}"
        );
        assert!(missing.contains("key `swarm.key`"), "{missing}");
        let no_key = swarm_key_problem(Some(&secret("other", b"x")), &named, "team");
        assert!(no_key.is_some_and(|m| m.contains("Secret pnet has no key `swarm.key`")));
        let hex = "ab".repeat(32);
        let bare = swarm_key_problem(Some(&secret("swarm.key", hex.as_bytes())), &named, "team")
            .expect("bare hex is no swarm key");
        assert!(
            bare.starts_with("spec.swarmKeyRef: Secret pnet key `swarm.key` does not start"),
            "{bare}"
        );
        assert!(!bare.contains(&hex), "the key is never quoted: {bare}");
        let good = crate::api::swarm_key_text(&hex);
        let good = secret("swarm.key", good.as_bytes());
        assert_eq!(swarm_key_problem(Some(&good), &named, "team"), None);
    }

    #[test]
    fn generated_secrets_are_64_hex_digits() {
        let s = random_secret().expect("urandom");
        assert!(build::is_valid_cluster_secret(s.as_bytes()), "{s}");
        assert_ne!(s, random_secret().expect("urandom"));
    }
}
