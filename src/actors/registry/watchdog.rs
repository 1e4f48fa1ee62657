//! systemd's watchdog, pinged from the registry's own loop: a registry
//! that stops answering stops the pings, and systemd restarts labd.

use std::time::Duration;

use actix::prelude::*;
use tracing::info;

use super::Registry;

/// Starts pinging the watchdog every `every` (half its timeout).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StartWatchdog {
    pub every: Duration,
}

impl Handler<StartWatchdog> for Registry {
    type Result = ();

    fn handle(&mut self, msg: StartWatchdog, ctx: &mut Context<Self>) {
        info!(every_ms = msg.every.as_millis() as u64, "pinging systemd's watchdog");
        crate::systemd::watchdog();
        ctx.run_interval(msg.every, |_act, ctx| {
            if stall_injected() {
                // Test-only: the registry stops answering anything, as a
                // wedged one would; the pings stop with it.
                tracing::error!("registry stalled (injected)");
                ctx.wait(actix::fut::wrap_future(futures::future::pending::<()>()));
                return;
            }
            crate::systemd::watchdog();
        });
    }
}

/// Test-only (`fault-injection`): the registry stalls once the file
/// `LABD_FAULT_STALL_REGISTRY_FILE` names exists.
fn stall_injected() -> bool {
    #[cfg(feature = "fault-injection")]
    if let Some(p) = std::env::var_os("LABD_FAULT_STALL_REGISTRY_FILE") {
        return std::path::Path::new(&p).exists();
    }
    false
}
