//! Retention policies: which tags and untagged manifests of a repository to delete.
//!
//! A policy applies to the repositories its globs match (`*` matches any characters,
//! `/` included); for each repository the first matching policy applies. Its kinds
//! combine:
//! - `keep_tags: N` — keep the N most recently pushed tags (by when each tag was last
//!   pushed), and `keep_matching` — keep tags matching any of these regexes. With
//!   either set, every other tag is deleted; with neither, no tag is.
//! - `untagged_older_than: X` — delete manifests that nothing keeps and that were
//!   pushed longer than X ago. Kept are: manifests a remaining tag points at, those
//!   pushed within X, and (transitively) the children of kept indexes and the referrers
//!   of kept manifests. The rest go, parents and subjects before their children and
//!   referrers.
//! - `keep_pulled_within: Y` — a tag whose manifest, or a manifest that, was pulled
//!   (GET or HEAD) within Y is kept whatever the above says.
//!
//! [`plan`] decides from a snapshot of the repository, without writing; applying a plan
//! deletes each tag only if it still points where it did (`delete_tag_if`) and each
//! manifest only if, re-checked under its row lock, nothing reaches it
//! (`delete_manifest_if_unreachable`), so a push racing the policy wins. What the
//! deletes unreference is then collected by the reviews like any other garbage.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use regex::Regex;
use tracing::Instrument;

use super::super::{now_ms, Registry, Result};
use super::metrics;
use crate::metadata::gc::RepoSnapshot;
use crate::types::glob::glob;
use crate::types::{Digest, RepoName, Tag};

/// One `retention` entry.
#[derive(Debug, Clone, Default)]
pub struct RetentionPolicy {
    /// Globs of repository names.
    pub repositories: Vec<String>,
    pub keep_tags: Option<usize>,
    pub keep_matching: Vec<Regex>,
    pub untagged_older_than: Option<Duration>,
    pub keep_pulled_within: Option<Duration>,
    /// Only log what the policy would delete.
    pub dry_run: bool,
}

impl RetentionPolicy {
    pub fn matches(&self, repo: &str) -> bool {
        self.repositories.iter().any(|g| glob(g, repo))
    }
}

/// What a policy deletes in one repository.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionPlan {
    /// Tags to delete, with the manifest each points at.
    pub tags: Vec<(Tag, Digest)>,
    /// Manifests to delete with their sizes, in an order that deletes every parent and
    /// subject before what it keeps.
    pub manifests: Vec<(Digest, u64)>,
    /// Whether the policy was a dry run (then nothing was deleted).
    pub dry_run: bool,
}

impl RetentionPlan {
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty() && self.manifests.is_empty()
    }
}

fn cutoff(now: i64, d: Duration) -> i64 {
    now.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Decides what `policy` deletes from the repository `snapshot` describes, at `now`.
pub fn plan(policy: &RetentionPolicy, snapshot: &RepoSnapshot, now: i64) -> RetentionPlan {
    let pulled_since = policy.keep_pulled_within.map(|d| cutoff(now, d));
    let recently_pulled: HashSet<&Digest> = snapshot
        .manifests
        .iter()
        .filter(
            |m| matches!((pulled_since, m.last_pulled_at), (Some(since), Some(at)) if at >= since),
        )
        .map(|m| &m.digest)
        .collect();

    // Tags.
    let mut tags: Vec<_> = snapshot.tags.iter().collect();
    tags.sort_by(|a, b| {
        b.updated_at
            .cmp(&a.updated_at)
            .then_with(|| a.name.as_str().cmp(b.name.as_str()))
    });
    let prunes_tags = policy.keep_tags.is_some() || !policy.keep_matching.is_empty();
    let mut deleted_tags = Vec::new();
    let mut remaining: HashSet<&Digest> = HashSet::new();
    for (rank, t) in tags.iter().enumerate() {
        let keep = !prunes_tags
            || policy.keep_tags.is_some_and(|n| rank < n)
            || policy
                .keep_matching
                .iter()
                .any(|r| r.is_match(t.name.as_str()))
            || recently_pulled.contains(&t.digest);
        if keep {
            remaining.insert(&t.digest);
        } else {
            deleted_tags.push((t.name.clone(), t.digest.clone()));
        }
    }
    deleted_tags.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));

    // Untagged manifests.
    let mut manifests = Vec::new();
    if let Some(age) = policy.untagged_older_than {
        let young_since = cutoff(now, age);
        let mut children: HashMap<&Digest, Vec<&Digest>> = HashMap::new();
        for (parent, child) in &snapshot.children {
            children.entry(parent).or_default().push(child);
        }
        let mut referrers: HashMap<&Digest, Vec<&Digest>> = HashMap::new();
        for m in &snapshot.manifests {
            if let Some(subject) = &m.subject {
                referrers.entry(subject).or_default().push(&m.digest);
            }
        }
        let mut kept: HashSet<&Digest> = HashSet::new();
        let mut todo: Vec<&Digest> = snapshot
            .manifests
            .iter()
            .filter(|m| {
                remaining.contains(&m.digest)
                    || m.created_at > young_since
                    || recently_pulled.contains(&m.digest)
            })
            .map(|m| &m.digest)
            .collect();
        while let Some(d) = todo.pop() {
            if !kept.insert(d) {
                continue;
            }
            let next = children.get(d).into_iter().chain(referrers.get(d));
            todo.extend(next.flatten().copied());
        }
        let doomed: BTreeSet<&Digest> = snapshot
            .manifests
            .iter()
            .map(|m| &m.digest)
            .filter(|d| !kept.contains(d))
            .collect();
        let sizes: HashMap<&Digest, u64> = snapshot
            .manifests
            .iter()
            .map(|m| (&m.digest, m.size))
            .collect();
        // Parents and subjects first: a manifest is deleted once nothing doomed that
        // would keep it (a parent, its subject) is left.
        let mut keepers: HashMap<&Digest, usize> = doomed.iter().map(|d| (*d, 0)).collect();
        for (parent, child) in &snapshot.children {
            if doomed.contains(parent) {
                if let Some(n) = keepers.get_mut(child) {
                    *n += 1;
                }
            }
        }
        for m in &snapshot.manifests {
            if let (Some(subject), Some(n)) = (&m.subject, keepers.get(&m.digest).copied()) {
                if doomed.contains(subject) {
                    keepers.insert(&m.digest, n + 1);
                }
            }
        }
        let mut ready: Vec<&Digest> = doomed.iter().copied().filter(|d| keepers[d] == 0).collect();
        ready.sort();
        ready.reverse();
        while let Some(d) = ready.pop() {
            manifests.push((d.clone(), sizes.get(d).copied().unwrap_or(0)));
            let freed = children.get(d).into_iter().chain(referrers.get(d));
            for next in freed.flatten() {
                if let Some(n) = keepers.get_mut(next) {
                    *n -= 1;
                    if *n == 0 {
                        ready.push(next);
                    }
                }
            }
        }
    }
    RetentionPlan {
        tags: deleted_tags,
        manifests,
        dry_run: policy.dry_run,
    }
}

impl Registry {
    /// Applies the retention policies to every repository they match (with `dry_run`,
    /// or a policy's own, only plans). Returns the plans that delete something.
    pub async fn apply_retention(&self, dry_run: bool) -> Result<Vec<(RepoName, RetentionPlan)>> {
        let policies = &self.options.gc.retention;
        if policies.is_empty() || (!dry_run && !self.gc_enabled()) {
            return Ok(Vec::new());
        }
        let started = Instant::now();
        let plans = self
            .plan_and_apply(policies, dry_run)
            .instrument(tracing::info_span!("gc.retention", dry_run))
            .await?;
        metrics::retention_duration(started.elapsed());
        Ok(plans)
    }

    async fn plan_and_apply(
        &self,
        policies: &[RetentionPolicy],
        dry_run: bool,
    ) -> Result<Vec<(RepoName, RetentionPlan)>> {
        let mut plans = Vec::new();
        let mut last: Option<String> = None;
        loop {
            let page = self
                .meta
                .repositories
                .list_repositories(last.as_deref(), 1000)
                .await?;
            let Some(tail) = page.last().cloned() else {
                break;
            };
            for name in page {
                let Some(policy) = policies.iter().find(|p| p.matches(&name)) else {
                    continue;
                };
                let Ok(repo) = RepoName::parse(&name) else {
                    continue;
                };
                let Some(snapshot) = self.meta.gc.repository_snapshot(&repo).await? else {
                    continue;
                };
                let mut plan = plan(policy, &snapshot, now_ms());
                plan.dry_run |= dry_run;
                if plan.is_empty() {
                    continue;
                }
                if plan.dry_run {
                    tracing::info!(%repo, tags = plan.tags.len(), manifests = plan.manifests.len(),
                        "retention (dry run): would delete");
                } else {
                    self.carry_out(&repo, &mut plan).await?;
                }
                plans.push((repo, plan));
            }
            last = Some(tail);
        }
        Ok(plans)
    }

    /// Deletes what `plan` names, each only if still as planned; drops from the plan
    /// what was not deleted.
    async fn carry_out(&self, repo: &RepoName, plan: &mut RetentionPlan) -> Result<()> {
        let mut tags = Vec::new();
        for (tag, digest) in std::mem::take(&mut plan.tags) {
            if self.meta.gc.delete_tag_if(repo, &tag, &digest).await? {
                tags.push((tag, digest));
            }
        }
        let mut manifests = Vec::new();
        for (digest, size) in std::mem::take(&mut plan.manifests) {
            if self
                .meta
                .gc
                .delete_manifest_if_unreachable(repo, &digest)
                .await?
            {
                manifests.push((digest, size));
            }
        }
        metrics::retention("tag", tags.len() as u64);
        metrics::retention("manifest", manifests.len() as u64);
        tracing::info!(%repo, tags = tags.len(), manifests = manifests.len(), "retention: deleted");
        plan.tags = tags;
        plan.manifests = manifests;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::gc::{ManifestInfo, TagInfo};
    use crate::types::digest::Algorithm;

    fn d(s: &str) -> Digest {
        Algorithm::Sha256.digest_of(s.as_bytes())
    }

    fn snapshot() -> RepoSnapshot {
        let mut s = RepoSnapshot::default();
        for i in 0..5 {
            s.manifests.push(ManifestInfo {
                digest: d(&format!("m{i}")),
                size: 100 + i,
                created_at: 1_000 * i as i64,
                subject: None,
                last_pulled_at: None,
            });
            s.tags.push(TagInfo {
                name: Tag::parse(&format!("t{i}")).unwrap(),
                digest: d(&format!("m{i}")),
                updated_at: 1_000 * i as i64,
            });
        }
        s
    }

    #[test]
    fn keep_tags_and_matching() {
        let s = snapshot();
        let p = RetentionPolicy {
            keep_tags: Some(2),
            keep_matching: vec![Regex::new("^t0$").unwrap()],
            ..Default::default()
        };
        let plan = plan(&p, &s, 10_000);
        let names: Vec<&str> = plan.tags.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(names, ["t1", "t2"]);
        assert!(plan.manifests.is_empty());
    }

    #[test]
    fn untagged_order_and_pulls() {
        let mut s = snapshot();
        s.tags.clear();
        // m0 is an index of m1; m2 is a referrer of m1.
        s.children.push((d("m0"), d("m1")));
        s.manifests[2].subject = Some(d("m1"));
        s.manifests[4].last_pulled_at = Some(9_000);
        let p = RetentionPolicy {
            untagged_older_than: Some(Duration::from_millis(6_500)),
            keep_pulled_within: Some(Duration::from_millis(2_000)),
            ..Default::default()
        };
        let plan = plan(&p, &s, 10_000);
        let order: Vec<Digest> = plan.manifests.iter().map(|(m, _)| m.clone()).collect();
        // m3 is old enough (3000 < 3500) and unpulled; m4 was pulled.
        assert_eq!(order.len(), 4);
        let pos = |x: &str| order.iter().position(|m| *m == d(x)).unwrap();
        assert!(pos("m0") < pos("m1"));
        assert!(pos("m1") < pos("m2"));
        assert!(!order.contains(&d("m4")));
    }
}
