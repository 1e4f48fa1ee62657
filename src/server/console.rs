//! A console session: after the `{"ok": true}` reply the connection carries
//! the board's serial bytes both ways until either side closes.

use std::io;

use actix::Addr;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tracing::debug;

use crate::actors::registry::{ClaimNow, ConsoleGrant, HowIsClaim, OpenConsole, Registry};
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
    registry: &Addr<Registry>,
) -> io::Result<()> {
    let mut sess = grant.console.attach(grant.may_write);
    let mut writer = sess.writer.take();
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
    // A claimant's session that found another typing takes the writer
    // slot when it is its turn; a read-only one never does.
    let console = grant.console.clone();
    let waits = grant.may_write && writer.is_none();
    let next_writer = async move {
        if waits {
            console.next_writer().await
        } else {
            std::future::pending().await
        }
    };
    tokio::pin!(next_writer);
    let mut told_read_only = false;
    // A claimant's session is told 5 minutes before the lease ends (once
    // per lease end: a renew that moves it is told again).
    let mut lease_check = tokio::time::interval(LEASE_CHECK);
    let mut warned_for: Option<i64> = None;
    loop {
        tokio::select! {
            _ = lease_check.tick(), if owner.is_some() => {
                let handle = owner.clone().unwrap_or_default();
                if let Ok(ClaimNow::Live { expires_at }) = registry.send(HowIsClaim { handle }).await {
                    let left = expires_at - crate::util::now_unix_ms();
                    if left <= WARN_BEFORE_MS && warned_for != Some(expires_at) {
                        warned_for = Some(expires_at);
                        let left = crate::util::format_duration_compound(std::time::Duration::from_millis(left.max(0) as u64));
                        let note = format!(
                            "\r\n[boardlab: the claim's lease ends at {} (in {left}); `renew` to keep the board]\r\n",
                            crate::util::rfc3339_ms(expires_at)
                        );
                        w.write_all(note.as_bytes()).await?;
                        w.flush().await?;
                    }
                }
            },
            w2 = &mut next_writer, if writer.is_none() => {
                writer = Some(w2);
                w.write_all(b"\r\n[boardlab: the other session left: you are typing now; detach with ~. after a newline]\r\n").await?;
                w.flush().await?;
            },
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
                } else if !told_read_only {
                    // Once: typing into a read-only session goes nowhere.
                    told_read_only = true;
                    let why = if grant.may_write {
                        "another session is typing; you type once it leaves"
                    } else {
                        "this session is read-only"
                    };
                    w.write_all(format!("\r\n[boardlab: input dropped: {why}]\r\n").as_bytes()).await?;
                    w.flush().await?;
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
                    // the next claimant. The claimant learns how.
                    let handle = owner.clone().unwrap_or_default();
                    let how = match registry.send(HowIsClaim { handle }).await {
                        Ok(ClaimNow::Ended(how)) => how,
                        _ => "the claim ended".to_string(),
                    };
                    w.write_all(format!("\r\n[boardlab: {how}; console closed]\r\n").as_bytes()).await?;
                    w.flush().await?;
                    return Ok(());
                }
            },
        }
    }
}

/// How often a session looks at its claim's lease.
const LEASE_CHECK: std::time::Duration = std::time::Duration::from_secs(20);
/// How long before the lease ends a session is told.
const WARN_BEFORE_MS: i64 = 5 * 60 * 1000;

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
