//! Reading HTTP answers with a bound. A body from the service, STS or instance metadata is read
//! into memory whole, so without a bound one misbehaving peer (or a proxy's error page) could take
//! the process past its memory limit. The declared `content-length` is refused before anything is
//! read; a body without one (chunked) is counted as it streams and dropped once over.

/// Largest GetJobRun answer read. Real answers are a few KB; failure messages and configuration
/// lists can make them larger, and status copies bounded parts of them anyway.
pub const SERVICE_LIMIT: usize = 2 * 1024 * 1024;
/// Largest STS answer read (credentials and a request id: well under 4 KB in practice).
pub const STS_LIMIT: usize = 64 * 1024;
/// Largest instance-metadata answer read (a role name, a token or a credentials document).
pub const IMDS_LIMIT: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("answer declares {declared} bytes, over the limit of {limit}")]
    Declared { declared: u64, limit: usize },
    #[error("answer is over the limit of {limit} bytes")]
    Streamed { limit: usize },
    #[error(transparent)]
    Transport(#[from] reqwest::Error),
}

impl BodyError {
    /// Whether the answer was refused for its size (rather than lost in transit).
    pub fn is_too_large(&self) -> bool {
        !matches!(self, Self::Transport(_))
    }
}

/// The whole body, or an error once it is known to exceed `limit` bytes.
pub async fn read_bounded(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, BodyError> {
    let declared = response.content_length();
    if let Some(declared) = declared.filter(|n| *n > limit as u64) {
        return Err(BodyError::Declared { declared, limit });
    }
    let capacity = declared.map_or(0, |n| usize::try_from(n).unwrap_or(limit));
    let mut body = Vec::with_capacity(capacity.min(limit));
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::Streamed { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A one-connection-at-a-time HTTP server for tests that answers every request with a large body,
/// declared or chunked, and counts the body bytes it managed to write.
#[cfg(test)]
pub(crate) mod testing {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    pub struct BigAnswers {
        pub addr: SocketAddr,
        pub written: Arc<AtomicU64>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for BigAnswers {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl BigAnswers {
        pub fn written(&self) -> u64 {
            self.written.load(Ordering::SeqCst)
        }
    }

    /// Answers `status` with `total` bytes of `x`: with `content-length` when `declare`, else
    /// chunked, in 64 KiB chunks.
    pub async fn serve(status: u16, total: u64, declare: bool) -> BigAnswers {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let written = Arc::new(AtomicU64::new(0));
        let counter = written.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = vec![0u8; 16 * 1024];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let framing = if declare {
                    format!("content-length: {total}")
                } else {
                    "transfer-encoding: chunked".to_owned()
                };
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{framing}\r\nconnection: close\r\n\r\n"
                );
                if socket.write_all(head.as_bytes()).await.is_err() {
                    continue;
                }
                let chunk = vec![b'x'; 64 * 1024];
                let mut sent = 0u64;
                while sent < total {
                    let n = (total - sent).min(chunk.len() as u64) as usize;
                    let ok = if declare {
                        socket.write_all(&chunk[..n]).await.is_ok()
                    } else {
                        let mut framed = format!("{n:x}\r\n").into_bytes();
                        framed.extend_from_slice(&chunk[..n]);
                        framed.extend_from_slice(b"\r\n");
                        socket.write_all(&framed).await.is_ok()
                    };
                    if !ok {
                        break;
                    }
                    sent += n as u64;
                    counter.fetch_add(n as u64, Ordering::SeqCst);
                }
                if !declare {
                    let _ = socket.write_all(b"0\r\n\r\n").await;
                }
            }
        });
        BigAnswers {
            addr,
            written,
            task,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    async fn get(addr: std::net::SocketAddr) -> reqwest::Response {
        reqwest::Client::new()
            .get(format!("http://{addr}/"))
            .send()
            .await
            .expect("answer head")
    }

    #[tokio::test]
    async fn a_declared_oversize_is_refused_before_reading() {
        let server = testing::serve(200, 256 * MIB, true).await;
        let err = read_bounded(get(server.addr).await, 1024 * 1024)
            .await
            .expect_err("over the limit");
        assert!(matches!(err, BodyError::Declared { declared, .. } if declared == 256 * MIB));
        assert!(err.is_too_large());
    }

    #[tokio::test]
    async fn a_streamed_oversize_stops_the_read() {
        let server = testing::serve(200, 256 * MIB, false).await;
        let err = read_bounded(get(server.addr).await, 1024 * 1024)
            .await
            .expect_err("over the limit");
        assert!(
            matches!(err, BodyError::Streamed { limit: 1048576 }),
            "{err}"
        );
        // Had the whole answer been read before the refusal, all of it would have been sent.
        assert!(
            server.written() < 64 * MIB,
            "{} bytes sent",
            server.written()
        );
    }

    #[tokio::test]
    async fn bodies_within_the_limit_are_read_whole() {
        for declare in [true, false] {
            let server = testing::serve(200, 300 * 1024, declare).await;
            let body = read_bounded(get(server.addr).await, 300 * 1024)
                .await
                .expect("at the limit");
            assert_eq!(body.len(), 300 * 1024, "declare={declare}");
        }
    }
}
