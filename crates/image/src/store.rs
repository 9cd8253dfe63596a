//! Where image bytes live: the `ImageStore` trait with a filesystem store
//! (default, under the data dir) and an in-memory store (tests, demos).
//! Writes go to a temporary object that only becomes visible on `commit`,
//! so an interrupted upload leaves nothing behind.

use bytes::Bytes;
use futures_util::Stream;
use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object {0} not found in the store")]
    NotFound(String),
    #[error("store I/O on {what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// An object being written; dropped without `commit` it disappears.
#[async_trait::async_trait]
pub trait StoreWriter: Send {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError>;
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;
}

#[async_trait::async_trait]
pub trait ImageStore: Send + Sync {
    /// Glance's store name (`file`, `memory`).
    fn name(&self) -> &'static str;
    async fn writer(&self, key: &str) -> Result<Box<dyn StoreWriter>, StoreError>;
    /// The object's bytes, optionally only `[start, end]` (inclusive).
    async fn read(&self, key: &str, range: Option<(u64, u64)>) -> Result<ByteStream, StoreError>;
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    async fn exists(&self, key: &str) -> bool;
}

// ---- filesystem ---------------------------------------------------------

pub struct FsStore {
    root: PathBuf,
}

impl FsStore {
    pub fn new(root: PathBuf) -> Result<FsStore, StoreError> {
        std::fs::create_dir_all(&root).map_err(|source| StoreError::Io {
            what: root.display().to_string(),
            source,
        })?;
        Ok(FsStore { root })
    }

    fn path(&self, key: &str) -> PathBuf {
        // keys are server-made ids; keep them to one path component anyway
        self.root.join(key.replace(['/', '\\'], "_"))
    }
}

struct FsWriter {
    file: Option<tokio::fs::File>,
    tmp: PathBuf,
    dest: PathBuf,
}

impl Drop for FsWriter {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

fn io(what: &std::path::Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        what: what.display().to_string(),
        source,
    }
}

#[async_trait::async_trait]
impl StoreWriter for FsWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        use tokio::io::AsyncWriteExt;
        match self.file.as_mut() {
            Some(f) => f.write_all(&chunk).await.map_err(io(&self.tmp)),
            None => Err(StoreError::NotFound(self.tmp.display().to_string())),
        }
    }

    async fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        use tokio::io::AsyncWriteExt;
        if let Some(mut f) = self.file.take() {
            let r = async {
                f.flush().await?;
                f.sync_data().await?;
                tokio::fs::rename(&self.tmp, &self.dest).await
            }
            .await;
            if let Err(e) = r {
                let _ = tokio::fs::remove_file(&self.tmp).await;
                return Err(StoreError::Io {
                    what: self.dest.display().to_string(),
                    source: e,
                });
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl ImageStore for FsStore {
    fn name(&self) -> &'static str {
        "file"
    }

    async fn writer(&self, key: &str) -> Result<Box<dyn StoreWriter>, StoreError> {
        let dest = self.path(key);
        let tmp = self.root.join(format!(
            ".{}.{}.partial",
            key.replace(['/', '\\'], "_"),
            ferro_common::new_hex_id()
        ));
        let file = tokio::fs::File::create(&tmp).await.map_err(io(&tmp))?;
        Ok(Box::new(FsWriter {
            file: Some(file),
            tmp,
            dest,
        }))
    }

    async fn read(&self, key: &str, range: Option<(u64, u64)>) -> Result<ByteStream, StoreError> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let path = self.path(key);
        let mut f = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound(key.into()));
            }
            Err(e) => {
                return Err(StoreError::Io {
                    what: path.display().to_string(),
                    source: e,
                });
            }
        };
        let stream: ByteStream = match range {
            Some((start, end)) => {
                f.seek(std::io::SeekFrom::Start(start))
                    .await
                    .map_err(io(&path))?;
                Box::pin(tokio_util::io::ReaderStream::with_capacity(
                    f.take(end - start + 1),
                    256 * 1024,
                ))
            }
            None => Box::pin(tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024)),
        };
        Ok(stream)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::Io {
                what: path.display().to_string(),
                source: e,
            }),
        }
    }

    async fn exists(&self, key: &str) -> bool {
        tokio::fs::metadata(self.path(key)).await.is_ok()
    }
}

// ---- memory -------------------------------------------------------------

#[derive(Default, Clone)]
pub struct MemStore {
    objects: Arc<Mutex<HashMap<String, Bytes>>>,
}

struct MemWriter {
    key: String,
    buf: Vec<u8>,
    objects: Arc<Mutex<HashMap<String, Bytes>>>,
}

#[async_trait::async_trait]
impl StoreWriter for MemWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        self.buf.extend_from_slice(&chunk);
        Ok(())
    }
    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        if let Ok(mut o) = self.objects.lock() {
            o.insert(self.key.clone(), Bytes::from(self.buf));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl ImageStore for MemStore {
    fn name(&self) -> &'static str {
        "memory"
    }
    async fn writer(&self, key: &str) -> Result<Box<dyn StoreWriter>, StoreError> {
        Ok(Box::new(MemWriter {
            key: key.into(),
            buf: Vec::new(),
            objects: self.objects.clone(),
        }))
    }
    async fn read(&self, key: &str, range: Option<(u64, u64)>) -> Result<ByteStream, StoreError> {
        let data = self
            .objects
            .lock()
            .ok()
            .and_then(|o| o.get(key).cloned())
            .ok_or_else(|| StoreError::NotFound(key.into()))?;
        let data = match range {
            Some((s, e)) => data.slice(s as usize..(e as usize + 1).min(data.len())),
            None => data,
        };
        Ok(Box::pin(futures_util::stream::iter([Ok(data)])))
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        if let Ok(mut o) = self.objects.lock() {
            o.remove(key);
        }
        Ok(())
    }
    async fn exists(&self, key: &str) -> bool {
        self.objects
            .lock()
            .map(|o| o.contains_key(key))
            .unwrap_or(false)
    }
}
