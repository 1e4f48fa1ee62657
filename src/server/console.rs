//! A console session: after the `{"ok": true}` reply the connection carries
//! the board's serial bytes both ways until either side closes.

use std::io;

use actix::Addr;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tracing::debug;

use crate::actors::registry::{ConsoleGrant, OpenConsole, Registry};
use crate::actors::Identity;
use crate::protocol::{self, ApiError, Code};

/// Asks the registry whether (and how) the caller may use the console. A
/// refusal is an ordinary error reply: the connection stays in request mode.
pub async fn open(
    registry: &Addr<Registry>,
    who: Identity,
    handle: Option<String>,
    read_only: bool,
) -> Result<ConsoleGrant, ApiError> {
    match registry.send(OpenConsole { who, handle, read_only }).await {
        Ok(r) => r,
        Err(e) => Err(ApiError::new(Code::Internal, format!("registry unavailable: {e}"))),
    }
}

/// Runs one granted session to its end: the connection carries the
/// console's bytes both ways until either side closes.
pub async fn session<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    grant: ConsoleGrant,
    id: Value,
    mut reader: BufReader<R>,
    mut w: W,
) -> io::Result<()> {
    let mut sess = grant.console.attach(grant.may_write);
    let writer = sess.writer.take();
    let note = match (grant.may_write, writer.is_some()) {
        (true, true) => "attached read-write; detach with ~. after a newline",
        (true, false) => "another session is typing: attached read-only until it leaves",
        (false, _) => "attached read-only",
    };
    let status = grant.console.status();
    let result = json!({
        "board": grant.board,
        "writer": writer.is_some(),
        "console": status.state(),
        "message": note,
    });
    let mut out = protocol::ok_reply(&id, &result);
    out.push('\n');
    w.write_all(out.as_bytes()).await?;
    w.flush().await?;

    // Bytes the client sent right after its request line are console input.
    let early = reader.buffer().to_vec();
    reader.consume_all();
    if let (Some(wr), false) = (&writer, early.is_empty()) {
        let _ = wr.write(&early).await;
    }
    let (owner, mut claim_rx) = match grant.claim {
        Some((h, rx)) => (Some(h), Some(rx)),
        None => (None, None),
    };
    let mut buf = vec![0u8; 4096];
    loop {
        tokio::select! {
            chunk = sess.output.recv() => match chunk {
                Some(b) => {
                    w.write_all(&b).await?;
                    w.flush().await?;
                }
                None => return Ok(()),
            },
            n = reader.read(&mut buf) => {
                let n = n?;
                if n == 0 {
                    return Ok(());
                }
                if let Some(wr) = &writer {
                    if let Err(e) = wr.write(&buf[..n]).await {
                        debug!("console input dropped: {e}");
                        w.write_all(format!("\r\n[boardlab: {e}]\r\n").as_bytes()).await?;
                        w.flush().await?;
                    }
                }
            },
            changed = async {
                match claim_rx.as_mut() {
                    Some(rx) => rx.changed().await,
                    None => std::future::pending().await,
                }
            } => {
                let current = claim_rx.as_ref().and_then(|rx| rx.borrow().clone());
                if changed.is_err() || current != owner {
                    // The claim ended: what the board says next belongs to
                    // the next claimant.
                    w.write_all(b"\r\n[boardlab: the claim ended; console closed]\r\n").await?;
                    w.flush().await?;
                    return Ok(());
                }
            },
        }
    }
}

trait ConsumeAll {
    fn consume_all(&mut self);
}

impl<R: AsyncRead + Unpin> ConsumeAll for BufReader<R> {
    fn consume_all(&mut self) {
        use tokio::io::AsyncBufRead;
        let n = self.buffer().len();
        std::pin::Pin::new(self).consume(n);
    }
}
