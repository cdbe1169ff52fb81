//! object_store's HTTP client with the trace context added: every request to S3,
//! Azure Blob or GCS carries the current span's W3C `traceparent` (the storage call's
//! span, inside the request's trace) when traces are exported. object_store lets a
//! connector wrap its client (`with_http_connector`); the wrapped client is its own
//! reqwest one, built from the same `ClientOptions`.

use async_trait::async_trait;
use object_store::client::{
    ClientOptions, HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpService,
    ReqwestConnector,
};

/// Builds object_store's reqwest client, wrapped in [`Traced`].
#[derive(Debug, Default)]
pub struct Connector;

impl HttpConnector for Connector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(Traced(inner)))
    }
}

/// Adds `traceparent` to each request, then sends it with the inner client.
#[derive(Debug)]
struct Traced(HttpClient);

#[async_trait]
impl HttpService for Traced {
    async fn call(&self, mut req: HttpRequest) -> Result<HttpResponse, HttpError> {
        crate::telemetry::otlp::inject(req.headers_mut());
        self.0.execute(req).await
    }
}
