//! The built-in token server's access policy: rules from `auth.tokenserver.access`
//! naming who (users, groups, anonymous), which repositories (globs) and which actions.
//! A subject's actions on a repository are the union over every rule that applies.
//! With no rules at all, authenticated users may do everything and anonymous nothing.

use std::collections::{BTreeSet, HashMap};

use super::Action;
use crate::config::TokenServerConfig;
use crate::types::glob::glob;

#[derive(Debug, Clone)]
struct Rule {
    users: Vec<String>,
    groups: Vec<String>,
    anonymous: bool,
    repositories: Vec<String>,
    actions: BTreeSet<Action>,
    catalog: bool,
    quotas: bool,
}

#[derive(Debug, Clone, Default)]
pub struct AccessPolicy {
    rules: Vec<Rule>,
    /// user → groups
    memberships: HashMap<String, Vec<String>>,
}

impl AccessPolicy {
    pub fn from_config(config: &TokenServerConfig) -> AccessPolicy {
        let mut memberships: HashMap<String, Vec<String>> = HashMap::new();
        for (group, users) in &config.groups {
            for user in users {
                memberships
                    .entry(user.clone())
                    .or_default()
                    .push(group.clone());
            }
        }
        let rules = config
            .access
            .iter()
            .map(|r| Rule {
                users: r.users.clone(),
                groups: r.groups.clone(),
                anonymous: r.anonymous,
                repositories: r.repositories.clone(),
                actions: r
                    .actions
                    .iter()
                    .flat_map(|a| match a.as_str() {
                        "*" => Action::ALL.to_vec(),
                        other => Action::parse(other).into_iter().collect(),
                    })
                    .collect(),
                catalog: r.catalog,
                quotas: r.quotas,
            })
            .collect();
        AccessPolicy { rules, memberships }
    }

    fn applies(&self, rule: &Rule, subject: Option<&str>) -> bool {
        match subject {
            None => rule.anonymous,
            Some(user) => {
                rule.users.iter().any(|u| u == user || u == "*")
                    || self
                        .memberships
                        .get(user)
                        .is_some_and(|groups| groups.iter().any(|g| rule.groups.contains(g)))
            }
        }
    }

    /// Every action `subject` (`None`: anonymous) may take on `repository`.
    pub fn repository_actions(&self, subject: Option<&str>, repository: &str) -> BTreeSet<Action> {
        if self.rules.is_empty() {
            return match subject {
                Some(_) => Action::ALL.into_iter().collect(),
                None => BTreeSet::new(),
            };
        }
        self.rules
            .iter()
            .filter(|r| self.applies(r, subject))
            .filter(|r| r.repositories.iter().any(|p| glob(p, repository)))
            .flat_map(|r| r.actions.iter().copied())
            .collect()
    }

    /// May `subject` list the catalog?
    pub fn catalog(&self, subject: Option<&str>) -> bool {
        if self.rules.is_empty() {
            return subject.is_some();
        }
        self.rules
            .iter()
            .any(|r| r.catalog && self.applies(r, subject))
    }

    /// May `subject` read and change quotas (the admin API)? As for the catalog: with
    /// no rules, any authenticated user; else a rule with `quotas: true` must apply.
    pub fn quotas(&self, subject: Option<&str>) -> bool {
        if self.rules.is_empty() {
            return subject.is_some();
        }
        self.rules
            .iter()
            .any(|r| r.quotas && self.applies(r, subject))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_users_groups_anonymous() {
        let config: TokenServerConfig = serde_norway::from_str(
            "key: k\ngroups:\n  team-a: [alice]\naccess:\n  - groups: [team-a]\n    repositories: ['team-a/*']\n    actions: ['*']\n  - users: ['*']\n    anonymous: true\n    repositories: ['public/*']\n    actions: [pull]\n  - users: [admin]\n    catalog: true\n",
        )
        .unwrap();
        let p = AccessPolicy::from_config(&config);
        let all: BTreeSet<_> = Action::ALL.into_iter().collect();
        let pull: BTreeSet<_> = [Action::Pull].into_iter().collect();
        assert_eq!(p.repository_actions(Some("alice"), "team-a/app"), all);
        assert!(p.repository_actions(Some("alice"), "team-b/app").is_empty());
        assert_eq!(p.repository_actions(Some("bob"), "public/x"), pull);
        assert_eq!(p.repository_actions(None, "public/x"), pull);
        assert!(p.repository_actions(None, "team-a/app").is_empty());
        assert!(p.catalog(Some("admin")) && !p.catalog(Some("alice")) && !p.catalog(None));
        assert!(!p.quotas(Some("admin")) && !p.quotas(Some("alice")) && !p.quotas(None));
    }

    #[test]
    fn quota_admin_only_where_a_rule_grants_it() {
        let config: TokenServerConfig = serde_norway::from_str(
            "key: k\naccess:\n  - users: [ops]\n    quotas: true\n  - users: ['*']\n    repositories: ['*']\n    actions: [pull]\n",
        )
        .unwrap();
        let p = AccessPolicy::from_config(&config);
        assert!(p.quotas(Some("ops")));
        assert!(!p.quotas(Some("dev")) && !p.quotas(None));
        // No rules: any authenticated user, as for the catalog.
        let open = AccessPolicy::from_config(&serde_norway::from_str("key: k\n").unwrap());
        assert!(open.quotas(Some("dev")) && !open.quotas(None));
    }
}
