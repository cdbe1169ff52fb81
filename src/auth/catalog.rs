//! Which repositories a caller sees in `GET /v2/_catalog`: the ones it may pull.
//!
//! Reaching the catalog at all needs what distribution needs (`registry:catalog:*`
//! in a bearer token; any valid user under htpasswd). What it then lists:
//! - no authentication, or htpasswd (every valid user may pull everything; htpasswd
//!   has no per-repository rules): every repository;
//! - a token from the built-in token server: the repositories the token grants `pull`
//!   on, and every repository the access policy (`auth.tokenserver.access`) lets the
//!   token's subject pull (anonymous for an empty subject);
//! - a token from an external token server: Wharf cannot see that server's rules, so
//!   its `registry:catalog:*` grant is read as distribution reads it, an administrative
//!   one that lists every repository (plus nothing is hidden that the token names).

use std::sync::Arc;

use super::{Action, Authorizer, Grant, Mode};

/// A filter over repository names for one caller.
#[derive(Clone)]
pub enum CatalogView {
    /// Every repository.
    All,
    /// Only the names the function accepts.
    Pullable(Arc<dyn Fn(&str) -> bool + Send + Sync>),
}

impl std::fmt::Debug for CatalogView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CatalogView::All => f.write_str("All"),
            CatalogView::Pullable(_) => f.write_str("Pullable"),
        }
    }
}

impl CatalogView {
    pub fn shows(&self, repository: &str) -> bool {
        match self {
            CatalogView::All => true,
            CatalogView::Pullable(keep) => keep(repository),
        }
    }
}

impl Authorizer {
    /// What the holder of `grant` (authorized for the catalog) sees in it.
    pub fn catalog_view(&self, grant: &Grant) -> CatalogView {
        let claims = match (grant, &self.mode) {
            (Grant::Token(claims), Mode::Token(_)) => claims.clone(),
            _ => return CatalogView::All,
        };
        let Some(server) = self.token_server.clone() else {
            return CatalogView::All;
        };
        CatalogView::Pullable(Arc::new(move |name: &str| {
            let subject = claims.sub.as_deref().filter(|s| !s.is_empty());
            claims.allows_repository(name, Action::Pull) || server.may_pull(subject, name)
        }))
    }
}
