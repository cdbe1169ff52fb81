//! `http.prefix` and `http.host`: requests under the prefix are routed as if it were
//! not there, and the URLs the handlers generate (`Location`, the pagination `Link`),
//! which start at `/v2/`, get the prefix and, with `http.host`, the external origin.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderValue, LINK, LOCATION};
use actix_web::middleware::Next;
use actix_web::web;

/// The prefix (`/path`, or "") and what generated URLs start with (`https://host/path`).
#[derive(Debug, Clone, Default)]
pub struct Urls {
    pub prefix: String,
    pub base: String,
}

impl Urls {
    pub fn from_config(http: &crate::config::HttpConfig) -> Urls {
        Urls {
            prefix: http.prefix(),
            base: http.url_base(),
        }
    }

    /// True when nothing is rewritten.
    pub fn is_plain(&self) -> bool {
        self.prefix.is_empty() && self.base.is_empty()
    }
}

/// The middleware: strips the prefix before routing, rewrites generated URLs after.
pub async fn rewrite(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let urls = req.app_data::<web::Data<Urls>>().cloned();
    if let Some(urls) = &urls {
        if let Some(rest) = req.path().strip_prefix(urls.prefix.as_str()) {
            if !urls.prefix.is_empty() && rest.starts_with('/') {
                let pq = match req.uri().query() {
                    Some(q) => format!("{rest}?{q}"),
                    None => rest.to_string(),
                };
                let mut parts = req.uri().clone().into_parts();
                if let Ok(pq) = pq.parse() {
                    parts.path_and_query = Some(pq);
                    if let Ok(uri) = actix_web::http::Uri::from_parts(parts) {
                        req.match_info_mut().get_mut().update(&uri);
                        req.head_mut().uri = uri;
                    }
                }
            }
        }
    }
    let mut res = next.call(req).await?;
    if let Some(urls) = urls.filter(|u| !u.base.is_empty()) {
        let headers = res.headers_mut();
        for name in [LOCATION, LINK] {
            let Some(value) = headers.get(&name).and_then(|v| v.to_str().ok()) else {
                continue;
            };
            let new = if name == LOCATION {
                value
                    .starts_with("/v2/")
                    .then(|| format!("{}{value}", urls.base))
            } else {
                value
                    .contains("</v2/")
                    .then(|| value.replace("</v2/", &format!("<{}/v2/", urls.base)))
            };
            if let Some(v) = new.and_then(|n| HeaderValue::from_str(&n).ok()) {
                headers.insert(name, v);
            }
        }
    }
    Ok(res)
}
