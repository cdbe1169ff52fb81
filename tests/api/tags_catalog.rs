//! `GET /v2/<name>/tags/list` and `GET /v2/_catalog`: lexical order, `n`/`last`
//! pagination, the `Link: <…>; rel="next"` header.

use serde_json::{json, Value};

use crate::support::*;

const REPO: &str = "paged/repo";

/// Tags pushed out of order; ASCII order puts digits, then upper case, `_`, lower case.
const TAGS: [&str; 9] = ["latest", "v2", "1.0", "V1", "_x", "a", "B", "1.10", "1.9"];

fn sorted(items: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = items.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

async fn tagged_repo(reg: &TestRegistry) {
    let (body, _) = reg.push_image(REPO, TAGS[0], 40).await;
    for tag in &TAGS[1..] {
        reg.push_manifest(REPO, tag, OCI_MANIFEST, &body).await;
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().expect("string").to_string())
        .collect()
}

/// The target of `Link: <target>; rel="next"`.
fn next_link(r: &Resp) -> Option<String> {
    let link = r.header("Link")?;
    let (target, rel) = link
        .split_once(';')
        .unwrap_or_else(|| panic!("{}: malformed Link {link:?}", r.what));
    assert_eq!(rel.trim(), "rel=\"next\"", "{}: Link {link:?}", r.what);
    let target = target
        .trim()
        .strip_prefix('<')
        .and_then(|t| t.strip_suffix('>'))
        .unwrap_or_else(|| panic!("{}: Link target not in <>: {link:?}", r.what));
    Some(target.to_string())
}

#[tokio::test]
async fn tags_are_listed_in_lexical_order() {
    let reg = TestRegistry::start().await;
    tagged_repo(&reg).await;
    let r = reg.get(&format!("/v2/{REPO}/tags/list")).await;
    r.expect_status(200);
    assert!(r
        .header("Content-Type")
        .unwrap_or("")
        .starts_with("application/json"));
    assert!(r.header("Link").is_none(), "Link on a complete list");
    let v = r.json();
    assert_eq!(v["name"], json!(REPO));
    assert_eq!(strings(&v["tags"]), sorted(&TAGS));
}

#[tokio::test]
async fn tags_paginate_with_n_last_and_link() {
    let reg = TestRegistry::start().await;
    tagged_repo(&reg).await;
    let all = sorted(&TAGS);

    // n=2 pages, followed through Link until there is none.
    let mut seen = Vec::new();
    let mut next = Some(format!("/v2/{REPO}/tags/list?n=2"));
    let mut pages = 0;
    while let Some(path) = next {
        let r = reg.get(&path).await;
        r.expect_status(200);
        let v = r.json();
        assert_eq!(v["name"], json!(REPO));
        let page = strings(&v["tags"]);
        next = next_link(&r);
        if next.is_some() {
            assert_eq!(page.len(), 2, "{}: short page with a Link", r.what);
            let link = next.as_deref().unwrap_or_default();
            assert!(
                link.starts_with(&format!("/v2/{REPO}/tags/list?")),
                "{}: Link {link}",
                r.what
            );
            assert!(link.contains("n=2"), "{}: Link drops n: {link}", r.what);
            assert!(
                link.contains(&format!("last={}", page[1])),
                "{}: Link {link} does not continue after {}",
                r.what,
                page[1]
            );
        }
        seen.extend(page);
        pages += 1;
        assert!(pages <= all.len() + 1, "pagination does not end");
    }
    assert_eq!(seen, all);
    assert_eq!(pages, all.len().div_ceil(2));

    // Exactly n tags left: the last page has them all and no Link.
    let r = reg
        .get(&format!("/v2/{REPO}/tags/list?n={}", all.len()))
        .await;
    assert_eq!(strings(&r.json()["tags"]), all);
    assert!(r.header("Link").is_none());

    // n larger than the list.
    let r = reg.get(&format!("/v2/{REPO}/tags/list?n=1000")).await;
    assert_eq!(strings(&r.json()["tags"]), all);
    assert!(r.header("Link").is_none());
}

#[tokio::test]
async fn tags_n_zero_and_last() {
    let reg = TestRegistry::start().await;
    tagged_repo(&reg).await;
    let all = sorted(&TAGS);

    let r = reg.get(&format!("/v2/{REPO}/tags/list?n=0")).await;
    r.expect_status(200);
    assert_eq!(r.json()["tags"], json!([]));
    assert!(r.header("Link").is_none(), "n=0 must not have a Link");

    // last alone: everything after it.
    let r = reg.get(&format!("/v2/{REPO}/tags/list?last=B")).await;
    r.expect_status(200);
    let expected: Vec<String> = all.iter().filter(|t| t.as_str() > "B").cloned().collect();
    assert_eq!(strings(&r.json()["tags"]), expected);

    // last that is not itself a tag: the tags after it in order.
    let r = reg.get(&format!("/v2/{REPO}/tags/list?n=2&last=b")).await;
    let expected: Vec<String> = all
        .iter()
        .filter(|t| t.as_str() > "b")
        .take(2)
        .cloned()
        .collect();
    assert_eq!(strings(&r.json()["tags"]), expected);

    // last after every tag: an empty list, no Link.
    let r = reg.get(&format!("/v2/{REPO}/tags/list?last=zzz")).await;
    r.expect_status(200);
    assert_eq!(r.json()["tags"], json!([]));
    assert!(r.header("Link").is_none());
}

#[tokio::test]
async fn tags_of_unknown_repository_is_name_unknown() {
    let reg = TestRegistry::start().await;
    reg.get("/v2/no/such/repo/tags/list")
        .await
        .expect_error(404, "NAME_UNKNOWN");
    reg.get("/v2/no/such/repo/tags/list?n=1")
        .await
        .expect_error(404, "NAME_UNKNOWN");
}

const REPOS: [&str; 6] = [
    "zeta",
    "alpha/one",
    "alpha",
    "beta/x/y",
    "alpha-two",
    "alpha/one/deeper",
];

async fn populated(reg: &TestRegistry) {
    for (i, repo) in REPOS.iter().enumerate() {
        reg.push_image(repo, "latest", 50 + i as u64).await;
    }
}

#[tokio::test]
async fn catalog_lists_repositories_in_lexical_order() {
    let reg = TestRegistry::start().await;
    let r = reg.get("/v2/_catalog").await;
    r.expect_status(200);
    assert_eq!(r.json()["repositories"], json!([]));

    populated(&reg).await;
    let r = reg.get("/v2/_catalog").await;
    r.expect_status(200);
    assert!(r
        .header("Content-Type")
        .unwrap_or("")
        .starts_with("application/json"));
    assert!(r.header("Link").is_none());
    assert_eq!(strings(&r.json()["repositories"]), sorted(&REPOS));
}

#[tokio::test]
async fn catalog_paginates_with_link() {
    let reg = TestRegistry::start().await;
    populated(&reg).await;
    let all = sorted(&REPOS);
    let mut seen = Vec::new();
    let mut next = Some("/v2/_catalog?n=4".to_string());
    let mut pages = 0;
    while let Some(path) = next {
        let r = reg.get(&path).await;
        r.expect_status(200);
        let page = strings(&r.json()["repositories"]);
        next = next_link(&r);
        if let Some(link) = &next {
            assert_eq!(page.len(), 4, "{}: short page with a Link", r.what);
            assert!(link.starts_with("/v2/_catalog?"), "{}: Link {link}", r.what);
            assert!(link.contains("n=4"), "{}: Link {link}", r.what);
        }
        seen.extend(page);
        pages += 1;
        assert!(pages <= all.len() + 1, "pagination does not end");
    }
    assert_eq!(seen, all);
    assert_eq!(pages, 2);

    let r = reg.get("/v2/_catalog?n=0").await;
    assert_eq!(r.json()["repositories"], json!([]));
    assert!(r.header("Link").is_none());

    let r = reg.get("/v2/_catalog?n=2&last=alpha/one").await;
    let expected: Vec<String> = all
        .iter()
        .filter(|t| t.as_str() > "alpha/one")
        .take(2)
        .cloned()
        .collect();
    assert_eq!(strings(&r.json()["repositories"]), expected);
    // The Link's `last` is the page's last name (percent-encoded or not).
    let link = next_link(&r).expect("more repositories follow");
    let last = expected[1].replace('/', "%2F");
    assert!(
        link.contains(&format!("last={}", expected[1])) || link.contains(&format!("last={last}")),
        "{link}"
    );
}
