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

/// Writes an object with O_DIRECT from its own thread: image data bypasses
/// the page cache (an image store is written once and read rarely, and on
/// some machines filling the page cache costs more than the disk write). The
/// thread gathers chunks into an aligned 1 MiB buffer and writes whole
/// buffers; at commit the last whole blocks go the same way, the tail (not a
/// block multiple) through a second, ordinary descriptor, then fdatasync and
/// the rename. Dropped without commit, the partial file is removed at once.
struct DirectWriter {
    tx: Option<tokio::sync::mpsc::Sender<Bytes>>,
    done: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    commit: Arc<std::sync::atomic::AtomicBool>,
    tmp: PathBuf,
}

impl Drop for DirectWriter {
    fn drop(&mut self) {
        // Abandoned: the partial file goes now, not when the thread notices
        // (its open descriptor keeps writing into the unlinked file harmlessly).
        if !self.commit.load(std::sync::atomic::Ordering::Acquire) {
            self.tx = None;
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

const DIRECT_UNIT: usize = 1 << 20;
/// Bytes per read when serving an object: large reads keep the disk busy.
const READ_CHUNK: usize = 1 << 20;
const DIRECT_ALIGN: usize = 4096;

impl DirectWriter {
    async fn start(tmp: PathBuf, dest: PathBuf) -> std::io::Result<DirectWriter> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = tmp.clone();
        let file = tokio::task::spawn_blocking(move || {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_DIRECT)
                .open(&path)
        })
        .await
        .map_err(std::io::Error::other)??;
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(8);
        let commit = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = commit.clone();
        let path = tmp.clone();
        let done = tokio::task::spawn_blocking(move || {
            let r = direct_write(file, &path, &dest, rx, &flag);
            if r.is_err() {
                let _ = std::fs::remove_file(&path);
            }
            r
        });
        Ok(DirectWriter {
            tx: Some(tx),
            done: Some(done),
            commit,
            tmp,
        })
    }

    async fn outcome(&mut self) -> Result<(), StoreError> {
        let r = match self.done.take() {
            Some(h) => h.await.map_err(std::io::Error::other).and_then(|r| r),
            None => Err(std::io::Error::other("the writer already finished")),
        };
        r.map_err(io(&self.tmp))
    }
}

fn direct_write(
    mut file: std::fs::File,
    tmp: &std::path::Path,
    dest: &std::path::Path,
    mut rx: tokio::sync::mpsc::Receiver<Bytes>,
    commit: &std::sync::atomic::AtomicBool,
) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    let mut raw = vec![0u8; DIRECT_UNIT + DIRECT_ALIGN];
    let skew = raw.as_ptr() as usize % DIRECT_ALIGN;
    let start = (DIRECT_ALIGN - skew) % DIRECT_ALIGN;
    let buf = &mut raw[start..start + DIRECT_UNIT];
    let (mut fill, mut written) = (0usize, 0u64);
    while let Some(chunk) = rx.blocking_recv() {
        let mut rest = &chunk[..];
        while !rest.is_empty() {
            let n = (DIRECT_UNIT - fill).min(rest.len());
            buf[fill..fill + n].copy_from_slice(&rest[..n]);
            fill += n;
            rest = &rest[n..];
            if fill == DIRECT_UNIT {
                file.write_all(buf)?;
                written += DIRECT_UNIT as u64;
                fill = 0;
            }
        }
    }
    if !commit.load(std::sync::atomic::Ordering::Acquire) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::Interrupted,
            "the upload was abandoned",
        ));
    }
    let whole = fill / DIRECT_ALIGN * DIRECT_ALIGN;
    if whole > 0 {
        file.write_all(&buf[..whole])?;
        written += whole as u64;
    }
    if fill > whole {
        let tail = std::fs::OpenOptions::new().write(true).open(tmp)?;
        tail.write_all_at(&buf[whole..fill], written)?;
        tail.sync_data()?;
    } else {
        file.sync_data()?;
    }
    std::fs::rename(tmp, dest)
}

#[async_trait::async_trait]
impl StoreWriter for DirectWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        let sent = match &self.tx {
            Some(tx) => tx.send(chunk).await.is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // the thread stopped: its error says why
        self.tx = None;
        self.outcome().await?;
        Err(StoreError::NotFound(self.tmp.display().to_string()))
    }

    async fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        self.commit
            .store(true, std::sync::atomic::Ordering::Release);
        self.tx = None;
        self.outcome().await
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
        match DirectWriter::start(tmp.clone(), dest.clone()).await {
            Ok(w) => return Ok(Box::new(w)),
            // a filesystem without O_DIRECT (tmpfs): through the page cache
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => return Err(io(&tmp)(e)),
        }
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
                    READ_CHUNK,
                ))
            }
            None => Box::pin(tokio_util::io::ReaderStream::with_capacity(f, READ_CHUNK)),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "ferro-store-{name}-{}-{}",
            std::process::id(),
            ferro_common::new_hex_id()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Objects of awkward sizes, sent in uneven chunks, read back byte for
    /// byte (the direct writer's whole units, whole blocks and tail), and an
    /// abandoned writer leaves no file.
    #[tokio::test]
    async fn file_store_round_trips_every_size() {
        let dir = scratch("sizes");
        let store = FsStore::new(dir.clone()).unwrap();
        for (i, size) in [
            0usize,
            1,
            4095,
            4096,
            4097,
            (1 << 20) + 123,
            (3 << 20) + 5000,
        ]
        .into_iter()
        .enumerate()
        {
            let data: Vec<u8> = (0..size).map(|j| (j * 31 + i) as u8).collect();
            let key = format!("obj-{i}");
            let mut w = store.writer(&key).await.unwrap();
            let mut at = 0;
            let mut step = 7;
            while at < size {
                let n = step.min(size - at);
                w.write(Bytes::copy_from_slice(&data[at..at + n]))
                    .await
                    .unwrap();
                at += n;
                step = step * 3 % 300_007 + 1;
            }
            w.commit().await.unwrap();
            let mut got = Vec::new();
            let mut s = store.read(&key, None).await.unwrap();
            while let Some(c) = futures_util::StreamExt::next(&mut s).await {
                got.extend_from_slice(&c.unwrap());
            }
            assert!(got == data, "size {size} differs");
        }
        let mut w = store.writer("abandoned").await.unwrap();
        w.write(Bytes::from(vec![1u8; 3 << 20])).await.unwrap();
        drop(w);
        let left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with("obj-"))
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
