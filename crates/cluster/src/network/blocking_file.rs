//! [`BlockingFile`]: the snapshot files a transfer reads and writes, with each blocking call
//! run where the replica's [`Execution`] puts blocking work (tokio's blocking pool in a node,
//! in place in the simulation). Buffers move into the call and back, so nothing is copied.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use tandem_store::Execution;

pub struct BlockingFile {
    /// `None` only while a call has the file.
    file: Option<File>,
    execution: Execution,
}

impl BlockingFile {
    /// Opens `path` for reading; answers the file and its length.
    pub async fn open(path: PathBuf, execution: Execution) -> io::Result<(BlockingFile, u64)> {
        let (file, length) = run(execution, move || {
            let file = File::open(&path)?;
            let length = file.metadata()?.len();
            Ok((file, length))
        })
        .await?;
        Ok((BlockingFile::wrap(file, execution), length))
    }

    /// Creates `path`, which must not exist yet, for writing.
    pub async fn create_new(path: PathBuf, execution: Execution) -> io::Result<BlockingFile> {
        let file = run(execution, move || {
            OpenOptions::new().write(true).create_new(true).open(&path)
        })
        .await?;
        Ok(BlockingFile::wrap(file, execution))
    }

    /// Reads up to `buffer.len()` bytes into `buffer`; answers it and how many were read.
    pub async fn read(&mut self, mut buffer: Vec<u8>) -> io::Result<(Vec<u8>, usize)> {
        self.with_file(move |file| {
            let read = file.read(&mut buffer)?;
            Ok((buffer, read))
        })
        .await
    }

    /// Writes the first `length` bytes of `buffer`; answers the buffer.
    pub async fn write_all(&mut self, buffer: Vec<u8>, length: usize) -> io::Result<Vec<u8>> {
        self.with_file(move |file| {
            file.write_all(&buffer[..length])?;
            Ok(buffer)
        })
        .await
    }

    pub async fn sync_all(&mut self) -> io::Result<()> {
        self.with_file(|file| file.sync_all()).await
    }

    fn wrap(file: File, execution: Execution) -> BlockingFile {
        BlockingFile {
            file: Some(file),
            execution,
        }
    }

    async fn with_file<T: Send + 'static>(
        &mut self,
        work: impl FnOnce(&mut File) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let mut file = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("an earlier call on this file did not finish"))?;
        let (file, answer) = run(self.execution, move || {
            let answer = work(&mut file);
            Ok((file, answer))
        })
        .await?;
        self.file = Some(file);
        answer
    }
}

/// Makes the entries of `directory` durable (a created or renamed file in it).
pub async fn sync_directory(directory: &Path, execution: Execution) -> io::Result<()> {
    let directory = directory.to_path_buf();
    run(execution, move || File::open(&directory)?.sync_all()).await
}

pub async fn remove_file(path: &Path, execution: Execution) -> io::Result<()> {
    let path = path.to_path_buf();
    run(execution, move || std::fs::remove_file(&path)).await
}

async fn run<T: Send + 'static>(
    execution: Execution,
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    execution.run_blocking(work).await?
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn round_trip(execution: Execution) {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("snapshot");
        let mut file = BlockingFile::create_new(path.clone(), execution)
            .await
            .unwrap();
        let buffer = file
            .write_all(b"hello, snapshot".to_vec(), 5)
            .await
            .unwrap();
        assert_eq!(buffer.len(), 15, "the buffer comes back whole");
        file.sync_all().await.unwrap();
        sync_directory(directory.path(), execution).await.unwrap();
        assert!(
            BlockingFile::create_new(path.clone(), execution)
                .await
                .is_err()
        );
        let (mut file, length) = BlockingFile::open(path.clone(), execution).await.unwrap();
        assert_eq!(length, 5);
        let (buffer, read) = file.read(vec![0; 16]).await.unwrap();
        assert_eq!(&buffer[..read], b"hello");
        remove_file(&path, execution).await.unwrap();
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn files_work_the_same_on_threads_and_inline() {
        round_trip(Execution::Threads).await;
        round_trip(Execution::Inline).await;
    }
}
