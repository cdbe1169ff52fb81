//! `GET /v2/`: the version check, and what every response carries.

use reqwest::Method;

use crate::support::TestRegistry;

#[tokio::test]
async fn version_check_is_200_with_api_version_header() {
    let reg = TestRegistry::start().await;
    for path in ["/v2/", "/v2"] {
        let r = reg.get(path).await;
        r.expect_status(200);
        assert_eq!(
            r.header("Docker-Distribution-API-Version"),
            Some("registry/2.0")
        );
        assert!(r
            .header("Content-Type")
            .unwrap_or("")
            .starts_with("application/json"));
        assert!(r.json().is_object(), "{}: body {:?}", r.what, r.text());
    }
    let r = reg.head("/v2/").await;
    r.expect_status(200);
}

#[tokio::test]
async fn version_check_refuses_other_methods() {
    let reg = TestRegistry::start().await;
    for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
        let r = reg.send(reg.req(method, "/v2/")).await;
        r.expect_error(405, "UNSUPPORTED");
    }
}

#[tokio::test]
async fn unknown_endpoints_are_404_with_spec_error() {
    let reg = TestRegistry::start().await;
    for path in ["/v2/repo/nothing", "/v2/repo/blobs", "/v3/", "/"] {
        let r = reg.get(path).await;
        assert_eq!(r.status, 404, "{}: {}", r.what, r.text());
    }
}
