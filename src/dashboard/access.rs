//! Kubernetes access review for the dashboard (optional, `--kube-auth`): a bearer token that is
//! not the dashboard's own is checked with a TokenReview, and the identity it names must be
//! allowed by RBAC (SubjectAccessReview) to `patch` the IpfsCluster it acts on (`list`
//! ipfsclusters for reads when reads are authenticated). In-cluster clients then act with their
//! own ServiceAccount and RBAC, without sharing the dashboard token.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

/// A user the API server vouched for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReviewedUser {
    pub username: String,
    pub uid: Option<String>,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// What a caller wants to do to IpfsClusters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessTarget {
    /// `patch` for a change, `list` for a read.
    pub verb: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

/// Authentication and authorization by someone else than the dashboard (the API server).
pub trait AccessReview: Send + Sync {
    /// The user a bearer token belongs to; `None` when it is not valid. `Err` when the reviewer
    /// could not answer.
    fn authenticate(
        &self,
        token: String,
    ) -> BoxFuture<'static, Result<Option<ReviewedUser>, String>>;

    /// `Ok(())` when `user` may do `target`, else `Err(reason)`. The outer `Err` when the
    /// reviewer could not answer.
    fn permits(
        &self,
        user: ReviewedUser,
        target: AccessTarget,
    ) -> BoxFuture<'static, Result<Result<(), String>, String>>;
}

/// TokenReview + SubjectAccessReview through the Kubernetes API (needs `create` on
/// `tokenreviews` and `subjectaccessreviews`).
pub struct KubeAccessReview {
    client: kube::Client,
}

impl KubeAccessReview {
    pub fn new(client: kube::Client) -> KubeAccessReview {
        KubeAccessReview { client }
    }
}

impl AccessReview for KubeAccessReview {
    fn authenticate(
        &self,
        token: String,
    ) -> BoxFuture<'static, Result<Option<ReviewedUser>, String>> {
        let api: Api<TokenReview> = Api::all(self.client.clone());
        Box::pin(async move {
            let review = TokenReview {
                spec: TokenReviewSpec {
                    token,
                    audiences: None,
                },
                ..TokenReview::default()
            };
            let answer = api
                .create(&PostParams::default(), &review)
                .await
                .map_err(|e| format!("TokenReview: {e}"))?;
            let Some(status) = answer.status else {
                return Ok(None);
            };
            if status.authenticated != Some(true) {
                return Ok(None);
            }
            let Some(user) = status.user else {
                return Ok(None);
            };
            Ok(Some(ReviewedUser {
                username: user.username.unwrap_or_default(),
                uid: user.uid,
                groups: user.groups.unwrap_or_default(),
                extra: user.extra.unwrap_or_default(),
            }))
        })
    }

    fn permits(
        &self,
        user: ReviewedUser,
        target: AccessTarget,
    ) -> BoxFuture<'static, Result<Result<(), String>, String>> {
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        Box::pin(async move {
            let review = SubjectAccessReview {
                spec: SubjectAccessReviewSpec {
                    user: Some(user.username.clone()),
                    uid: user.uid.clone(),
                    groups: Some(user.groups.clone()),
                    extra: Some(user.extra.clone()),
                    resource_attributes: Some(ResourceAttributes {
                        group: Some("ipfskit.io".into()),
                        resource: Some("ipfsclusters".into()),
                        verb: Some(target.verb.clone()),
                        namespace: target.namespace.clone(),
                        name: target.name.clone(),
                        ..ResourceAttributes::default()
                    }),
                    ..SubjectAccessReviewSpec::default()
                },
                ..SubjectAccessReview::default()
            };
            let answer = api
                .create(&PostParams::default(), &review)
                .await
                .map_err(|e| format!("SubjectAccessReview: {e}"))?;
            let status = answer.status.unwrap_or_default();
            if status.allowed {
                Ok(Ok(()))
            } else {
                let reason = status
                    .reason
                    .filter(|r| !r.is_empty())
                    .unwrap_or_else(|| "RBAC does not allow it".into());
                Ok(Err(reason))
            }
        })
    }
}
