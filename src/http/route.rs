//! Parses a `/v2/…` path into a typed endpoint, once, before dispatch.
//!
//! Repository names have any number of `/`-separated components, so the API's routes
//! cannot be told apart by position; actix's regex routes (`{name:.+}`) would be tried one
//! after another for every request and cost more CPU than the whole handler. Instead the
//! path is split from the right at the keyword that ends every route (`manifests`,
//! `blobs`, `uploads`, `referrers`, `tags/list`): one pass, no regex.
//!
//! Besides `/v2/`, OpenShift's signature API extension
//! (`/extensions/v2/{name}/signatures/{digest}`) and Wharf's listing of every stored
//! signature form (`/extensions/wharf/v1/{name}/signatures/{digest}`).

use crate::auth::{Action, Need};

/// What a `/v2/` path addresses. Names and the second segment are still unvalidated
/// strings; handlers parse them into `RepoName`, `Digest`, `Reference`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Base,
    Catalog,
    Tags {
        name: String,
    },
    Manifest {
        name: String,
        reference: String,
    },
    UploadStart {
        name: String,
    },
    Upload {
        name: String,
        id: String,
    },
    Blob {
        name: String,
        digest: String,
    },
    Referrers {
        name: String,
        digest: String,
    },
    /// Wharf's quota admin API: `/v2/_wharf/quotas/` (all) or `…/quotas/{scope}`.
    Quota {
        scope: Option<String>,
    },
    /// `/v2/_wharf/usage/{scope}`: a scope's usage.
    Usage {
        scope: String,
    },
    /// OpenShift's signature API extension.
    Signatures {
        name: String,
        digest: String,
    },
    /// Every signature of a manifest, in every stored form (Wharf's own).
    SignatureForms {
        name: String,
        digest: String,
    },
}

impl Endpoint {
    /// A stable label for metrics and spans.
    pub fn label(&self) -> &'static str {
        match self {
            Endpoint::Base => "/v2/",
            Endpoint::Catalog => "/v2/_catalog",
            Endpoint::Tags { .. } => "/v2/{name}/tags/list",
            Endpoint::Manifest { .. } => "/v2/{name}/manifests/{reference}",
            Endpoint::UploadStart { .. } => "/v2/{name}/blobs/uploads/",
            Endpoint::Upload { .. } => "/v2/{name}/blobs/uploads/{id}",
            Endpoint::Blob { .. } => "/v2/{name}/blobs/{digest}",
            Endpoint::Referrers { .. } => "/v2/{name}/referrers/{digest}",
            Endpoint::Quota { .. } => "/v2/_wharf/quotas/{scope}",
            Endpoint::Usage { .. } => "/v2/_wharf/usage/{scope}",
            Endpoint::Signatures { .. } => "/extensions/v2/{name}/signatures/{digest}",
            Endpoint::SignatureForms { .. } => "/extensions/wharf/v1/{name}/signatures/{digest}",
        }
    }

    /// Parses a request path; `None` if it is not an API path.
    pub fn parse(path: &str) -> Option<Endpoint> {
        if let Some(rest) = path.strip_prefix("/extensions/") {
            return Self::parse_extension(rest);
        }
        let rest = path.strip_prefix("/v2")?;
        if rest.is_empty() || rest == "/" {
            return Some(Endpoint::Base);
        }
        let rest = rest.strip_prefix('/')?;
        if rest == "_catalog" {
            return Some(Endpoint::Catalog);
        }
        // `_wharf` is no repository name (a name starts with a letter or digit), so
        // the admin routes never shadow a repository's; a scope may contain `/`.
        if let Some(scope) = rest.strip_prefix("_wharf/quotas") {
            let scope = scope.strip_prefix('/').unwrap_or(scope);
            return Some(Endpoint::Quota {
                scope: non_empty(scope),
            });
        }
        if let Some(scope) = rest.strip_prefix("_wharf/usage/") {
            return non_empty(scope).map(|scope| Endpoint::Usage { scope });
        }
        if let Some(name) = rest.strip_suffix("/tags/list") {
            return non_empty(name).map(|name| Endpoint::Tags { name });
        }
        let (head, last) = rest.rsplit_once('/')?;
        if let Some(name) = head.strip_suffix("/blobs/uploads") {
            // `…/blobs/uploads/` (last empty) starts an upload; otherwise it is a session.
            let name = non_empty(name)?;
            return Some(if last.is_empty() {
                Endpoint::UploadStart { name }
            } else {
                Endpoint::Upload {
                    name,
                    id: last.to_string(),
                }
            });
        }
        let (name, keyword) = head.rsplit_once('/')?;
        let name = non_empty(name)?;
        let second = last.to_string();
        match keyword {
            "manifests" if !second.is_empty() => Some(Endpoint::Manifest {
                name,
                reference: second,
            }),
            "blobs" if second == "uploads" => Some(Endpoint::UploadStart { name }),
            "blobs" if !second.is_empty() => Some(Endpoint::Blob {
                name,
                digest: second,
            }),
            "referrers" if !second.is_empty() => Some(Endpoint::Referrers {
                name,
                digest: second,
            }),
            _ => None,
        }
    }

    /// `v2/{name}/signatures/{digest}` or `wharf/v1/{name}/signatures/{digest}`.
    fn parse_extension(rest: &str) -> Option<Endpoint> {
        let (all_forms, rest) = match rest.strip_prefix("v2/") {
            Some(rest) => (false, rest),
            None => (true, rest.strip_prefix("wharf/v1/")?),
        };
        let (head, digest) = rest.rsplit_once('/')?;
        let name = non_empty(head.strip_suffix("/signatures")?)?;
        let digest = non_empty(digest)?;
        Some(if all_forms {
            Endpoint::SignatureForms { name, digest }
        } else {
            Endpoint::Signatures { name, digest }
        })
    }

    /// What `method` on this endpoint needs from the caller.
    pub fn need(&self, method: &str) -> Need {
        use Endpoint as E;
        let repo = |name: &str, action| Need::Repository {
            name: name.to_string(),
            action,
        };
        match (self, method) {
            (E::Base, _) => Need::Authenticated,
            (E::Quota { .. } | E::Usage { .. }, "GET" | "HEAD") => Need::Quotas { write: false },
            (E::Quota { .. }, _) => Need::Quotas { write: true },
            (E::Catalog, _) => Need::Catalog,
            (
                E::Tags { name }
                | E::Manifest { name, .. }
                | E::Blob { name, .. }
                | E::Referrers { name, .. }
                | E::Signatures { name, .. }
                | E::SignatureForms { name, .. },
                "GET" | "HEAD",
            ) => repo(name, Action::Pull),
            (E::Signatures { name, .. }, "PUT") => repo(name, Action::Push),
            (E::Manifest { name, .. } | E::Blob { name, .. }, "DELETE") => {
                repo(name, Action::Delete)
            }
            (E::Manifest { name, .. }, "PUT") => repo(name, Action::Push),
            (E::UploadStart { name } | E::Upload { name, .. }, _) => repo(name, Action::Push),
            // Methods no route takes: authenticated callers get the 405.
            _ => Need::Authenticated,
        }
    }

    /// The repository name, for endpoints that have one.
    pub fn name(&self) -> Option<&str> {
        match self {
            Endpoint::Tags { name }
            | Endpoint::UploadStart { name }
            | Endpoint::Manifest { name, .. }
            | Endpoint::Upload { name, .. }
            | Endpoint::Blob { name, .. }
            | Endpoint::Referrers { name, .. }
            | Endpoint::Signatures { name, .. }
            | Endpoint::SignatureForms { name, .. } => Some(name),
            Endpoint::Base
            | Endpoint::Catalog
            | Endpoint::Quota { .. }
            | Endpoint::Usage { .. } => None,
        }
    }

    /// The segment after the keyword: reference, digest or upload id.
    pub fn second(&self) -> Option<&str> {
        match self {
            Endpoint::Manifest { reference: s, .. }
            | Endpoint::Upload { id: s, .. }
            | Endpoint::Blob { digest: s, .. }
            | Endpoint::Referrers { digest: s, .. }
            | Endpoint::Signatures { digest: s, .. }
            | Endpoint::SignatureForms { digest: s, .. } => Some(s),
            _ => None,
        }
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::Endpoint::{self, *};
    use crate::auth::{Action, Need};

    fn p(s: &str) -> Option<Endpoint> {
        Endpoint::parse(s)
    }

    #[test]
    fn parses_every_route() {
        let n = || "a/b/c".to_string();
        assert_eq!(p("/v2/"), Some(Base));
        assert_eq!(p("/v2"), Some(Base));
        assert_eq!(p("/v2/_catalog"), Some(Catalog));
        assert_eq!(p("/v2/a/b/c/tags/list"), Some(Tags { name: n() }));
        assert_eq!(
            p("/v2/a/b/c/manifests/latest"),
            Some(Manifest {
                name: n(),
                reference: "latest".into()
            })
        );
        assert_eq!(
            p("/v2/a/b/c/blobs/uploads/"),
            Some(UploadStart { name: n() })
        );
        assert_eq!(
            p("/v2/a/b/c/blobs/uploads"),
            Some(UploadStart { name: n() })
        );
        assert_eq!(
            p("/v2/a/b/c/blobs/uploads/xyz"),
            Some(Upload {
                name: n(),
                id: "xyz".into()
            })
        );
        assert_eq!(
            p("/v2/a/b/c/blobs/sha256:00"),
            Some(Blob {
                name: n(),
                digest: "sha256:00".into()
            })
        );
        assert_eq!(
            p("/v2/a/b/c/referrers/sha256:00"),
            Some(Referrers {
                name: n(),
                digest: "sha256:00".into()
            })
        );
        assert_eq!(
            p("/extensions/v2/a/b/c/signatures/sha256:00"),
            Some(Signatures {
                name: n(),
                digest: "sha256:00".into()
            })
        );
        assert_eq!(
            p("/extensions/wharf/v1/a/b/c/signatures/sha256:00"),
            Some(SignatureForms {
                name: n(),
                digest: "sha256:00".into()
            })
        );
        // Keywords inside a name are just name components.
        assert_eq!(
            p("/v2/blobs/manifests/manifests/v1"),
            Some(Manifest {
                name: "blobs/manifests".into(),
                reference: "v1".into()
            })
        );
    }

    #[test]
    fn what_each_request_needs() {
        let e = |p: &str| Endpoint::parse(p).unwrap();
        let r = |action| Need::Repository {
            name: "a/b".into(),
            action,
        };
        assert_eq!(e("/v2/").need("GET"), Need::Authenticated);
        assert_eq!(e("/v2/_catalog").need("GET"), Need::Catalog);
        assert_eq!(
            e("/v2/_wharf/quotas/team-a/").need("PUT"),
            Need::Quotas { write: true }
        );
        assert_eq!(
            e("/v2/_wharf/usage/team-a/app").need("GET"),
            Need::Quotas { write: false }
        );
        assert_eq!(
            p("/v2/_wharf/quotas/team-a/"),
            Some(Quota {
                scope: Some("team-a/".into())
            })
        );
        assert_eq!(p("/v2/_wharf/quotas"), Some(Quota { scope: None }));
        assert_eq!(e("/v2/a/b/tags/list").need("GET"), r(Action::Pull));
        assert_eq!(e("/v2/a/b/manifests/x").need("HEAD"), r(Action::Pull));
        assert_eq!(e("/v2/a/b/manifests/x").need("PUT"), r(Action::Push));
        assert_eq!(e("/v2/a/b/manifests/x").need("DELETE"), r(Action::Delete));
        assert_eq!(e("/v2/a/b/blobs/sha256:0").need("GET"), r(Action::Pull));
        assert_eq!(
            e("/v2/a/b/blobs/sha256:0").need("DELETE"),
            r(Action::Delete)
        );
        assert_eq!(e("/v2/a/b/blobs/uploads/").need("POST"), r(Action::Push));
        assert_eq!(e("/v2/a/b/blobs/uploads/u").need("GET"), r(Action::Push));
        assert_eq!(e("/v2/a/b/blobs/uploads/u").need("PATCH"), r(Action::Push));
        assert_eq!(e("/v2/a/b/referrers/sha256:0").need("GET"), r(Action::Pull));
        let sigs = e("/extensions/v2/a/b/signatures/sha256:0");
        assert_eq!(sigs.need("GET"), r(Action::Pull));
        assert_eq!(sigs.need("PUT"), r(Action::Push));
        assert_eq!(
            r(Action::Push).scope().as_deref(),
            Some("repository:a/b:pull,push")
        );
    }

    #[test]
    fn rejects_non_routes() {
        for bad in [
            "/v3/",
            "/v2x",
            "/v2/a",
            "/v2/a/manifests/",
            "/v2/manifests/x",
            "/v2/a/blobs/",
            "/v2//blobs/uploads/",
            "/v2/a/other/x",
            "/v2/tags/list",
            "/extensions/v2/a/signatures/",
            "/extensions/v2/signatures/sha256:0",
            "/extensions/v3/a/signatures/sha256:0",
            "/extensions/v2/a/other/sha256:0",
        ] {
            assert_eq!(p(bad), None, "{bad}");
        }
    }
}
