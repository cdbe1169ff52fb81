//! object_store's HTTP client with the trace context added: every request to S3,
//! Azure Blob or GCS carries the current span's W3C `traceparent` (the storage call's
//! span, inside the request's trace) when traces are exported. object_store lets a
//! connector wrap its client (`with_http_connector`); the wrapped client is its own
//! reqwest one, built from the same `ClientOptions`. The compose calls Wharf makes
//! itself get the same header: [`headers`] for its reqwest requests (Azure's Put Block
//! From URL, GCS's `objects.compose`), [`SdkInterceptor`] for the AWS SDK's (S3's
//! `CreateMultipartUpload` and `UploadPartCopy`).

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

/// The current span's trace context as request headers (empty when export is off),
/// for the requests Wharf builds itself with reqwest.
pub fn headers() -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    crate::telemetry::otlp::inject(&mut headers);
    headers
}

/// Adds `traceparent` (and `tracestate`) to each request the AWS SDK sends, after
/// signing: the header is not part of the signature, so a retry re-signs alike.
#[derive(Debug)]
pub struct SdkInterceptor;

impl aws_sdk_s3::config::Intercept for SdkInterceptor {
    fn name(&self) -> &'static str {
        "wharf.traceparent"
    }

    fn modify_before_transmit(
        &self,
        context: &mut aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextMut<'_>,
        _components: &aws_sdk_s3::config::RuntimeComponents,
        _cfg: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let request = context.request_mut().headers_mut();
        for (name, value) in &headers() {
            if let Ok(value) = value.to_str() {
                request.insert(name.as_str().to_string(), value.to_string());
            }
        }
        Ok(())
    }
}
