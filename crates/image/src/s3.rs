//! The S3-compatible store (`[image] store = "s3"`): objects in one bucket
//! of any S3 API (Ceph RGW, MinIO...) reached over plain HTTP, through
//! `object_store`. Uploads
//! are multipart in fixed parts, so memory stays bounded whatever the
//! image size; an upload that is not committed is aborted, leaving no
//! object and no parts behind.

use crate::store::{ByteStream, ImageStore, StoreError, StoreWriter};
use bytes::Bytes;
use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse,
    HttpResponseBody, HttpService,
};
use object_store::path::Path as ObjPath;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, WriteMultipart};
use std::sync::Arc;

/// S3's smallest part is 5 MiB; 8 MiB parts, two in flight, keep a
/// writer's memory near 24 MiB.
pub const PART: usize = 8 << 20;
pub const IN_FLIGHT: usize = 2;

pub struct S3Settings {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    /// Key prefix inside the bucket (`images/`...), may be empty.
    pub prefix: String,
}

pub struct S3Store {
    s3: Arc<AmazonS3>,
    prefix: String,
    what: String,
}

impl S3Store {
    pub fn new(s: &S3Settings) -> Result<S3Store, String> {
        if !s.endpoint.starts_with("http://") {
            return Err(format!(
                "S3 store: s3_store_host {} must be an http:// URL (this build speaks S3 over plain HTTP)",
                s.endpoint
            ));
        }
        let s3 = AmazonS3Builder::new()
            .with_endpoint(&s.endpoint)
            .with_bucket_name(&s.bucket)
            .with_region(&s.region)
            .with_access_key_id(&s.access_key)
            .with_secret_access_key(&s.secret_key)
            .with_allow_http(true)
            // Path-style URLs (`endpoint/bucket/key`), as RGW and MinIO serve them.
            .with_virtual_hosted_style_request(false)
            .with_http_connector(PlainHttp)
            .build()
            .map_err(|e| format!("S3 store: {e}"))?;
        let prefix = s.prefix.trim_matches('/').to_string();
        Ok(S3Store {
            s3: Arc::new(s3),
            what: format!("{}/{}", s.endpoint.trim_end_matches('/'), s.bucket),
            prefix,
        })
    }

    fn path(&self, key: &str) -> ObjPath {
        let key = key.replace(['/', '\\'], "_");
        if self.prefix.is_empty() {
            ObjPath::from(key)
        } else {
            ObjPath::from(format!("{}/{key}", self.prefix))
        }
    }

    fn err(&self, key: &str, e: object_store::Error) -> StoreError {
        match e {
            object_store::Error::NotFound { .. } => StoreError::NotFound(key.to_string()),
            other => StoreError::Io {
                what: format!("{}/{key}", self.what),
                source: std::io::Error::other(other.to_string()),
            },
        }
    }
}

/// object_store's HTTP carried by reqwest (plain HTTP: no TLS stack in
/// this build).
#[derive(Debug)]
struct PlainHttp;

impl HttpConnector for PlainHttp {
    fn connect(&self, _: &object_store::ClientOptions) -> object_store::Result<HttpClient> {
        let client =
            reqwest::Client::builder()
                .build()
                .map_err(|e| object_store::Error::Generic {
                    store: "S3",
                    source: Box::new(e),
                })?;
        Ok(HttpClient::new(PlainHttpService(client)))
    }
}

#[derive(Debug)]
struct PlainHttpService(reqwest::Client);

#[async_trait::async_trait]
impl HttpService for PlainHttpService {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        use http_body_util::BodyExt;
        let (parts, body) = req.into_parts();
        let url = parts.uri.to_string();
        let mut rb = self
            .0
            .request(parts.method, url)
            .headers(parts.headers)
            .body(reqwest::Body::wrap(body));
        if parts.version != http::Version::default() {
            rb = rb.version(parts.version);
        }
        let resp = rb.send().await.map_err(|e| {
            let kind = if e.is_connect() {
                HttpErrorKind::Connect
            } else if e.is_timeout() {
                HttpErrorKind::Timeout
            } else {
                HttpErrorKind::Request
            };
            HttpError::new(kind, e)
        })?;
        let mut out = http::Response::builder().status(resp.status());
        if let Some(h) = out.headers_mut() {
            *h = resp.headers().clone();
        }
        let body = reqwest::Body::from(resp).map_err(|e| HttpError::new(HttpErrorKind::Request, e));
        out.body(HttpResponseBody::new(body))
            .map_err(|e| HttpError::new(HttpErrorKind::Unknown, e))
    }
}

/// Bytes of an object being written: buffered until the first part is
/// full (small images are one PUT), then a multipart upload.
struct S3Writer {
    store: Arc<AmazonS3>,
    path: ObjPath,
    what: String,
    small: Vec<Bytes>,
    small_len: usize,
    upload: Option<WriteMultipart>,
    done: bool,
}

impl S3Writer {
    fn fail(&self, e: object_store::Error) -> StoreError {
        StoreError::Io {
            what: self.what.clone(),
            source: std::io::Error::other(e.to_string()),
        }
    }
}

impl Drop for S3Writer {
    fn drop(&mut self) {
        // Not committed: abort the multipart upload so no parts linger.
        if !self.done
            && let Some(up) = self.upload.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move {
                if let Err(e) = up.abort().await {
                    tracing::warn!("aborting an S3 upload: {e}");
                }
            });
        }
    }
}

#[async_trait::async_trait]
impl StoreWriter for S3Writer {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        if self.upload.is_none() {
            self.small_len += chunk.len();
            self.small.push(chunk);
            if self.small_len < PART {
                return Ok(());
            }
            let up = self
                .store
                .put_multipart(&self.path)
                .await
                .map_err(|e| self.fail(e))?;
            let mut w = WriteMultipart::new_with_chunk_size(up, PART);
            for c in self.small.drain(..) {
                w.put(c);
            }
            self.small_len = 0;
            self.upload = Some(w);
            return Ok(());
        }
        if let Some(w) = self.upload.as_mut() {
            w.wait_for_capacity(IN_FLIGHT)
                .await
                .map_err(|e| StoreError::Io {
                    what: self.what.clone(),
                    source: std::io::Error::other(e.to_string()),
                })?;
            w.put(chunk);
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        let r = match self.upload.take() {
            Some(w) => w.finish().await.map(|_| ()),
            None => {
                let payload: object_store::PutPayload = self.small.drain(..).collect();
                self.store.put(&self.path, payload).await.map(|_| ())
            }
        };
        self.done = true;
        r.map_err(|e| self.fail(e))
    }
}

#[async_trait::async_trait]
impl ImageStore for S3Store {
    fn name(&self) -> &'static str {
        "s3"
    }

    async fn writer(&self, key: &str) -> Result<Box<dyn StoreWriter>, StoreError> {
        Ok(Box::new(S3Writer {
            store: self.s3.clone(),
            path: self.path(key),
            what: format!("{}/{key}", self.what),
            small: Vec::new(),
            small_len: 0,
            upload: None,
            done: false,
        }))
    }

    async fn read(&self, key: &str, range: Option<(u64, u64)>) -> Result<ByteStream, StoreError> {
        let opts = GetOptions {
            range: range.map(|(a, b)| GetRange::Bounded(a..b + 1)),
            ..GetOptions::default()
        };
        let got = self
            .s3
            .get_opts(&self.path(key), opts)
            .await
            .map_err(|e| self.err(key, e))?;
        Ok(Box::pin(got.into_stream().map(|r| {
            r.map_err(|e| std::io::Error::other(e.to_string()))
        })))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self.s3.delete(&self.path(key)).await {
            Ok(()) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(key, e)),
        }
    }

    async fn exists(&self, key: &str) -> bool {
        self.s3.head(&self.path(key)).await.is_ok()
    }
}
