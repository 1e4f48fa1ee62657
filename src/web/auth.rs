//! HTTP basic auth for the page (`[web] user` and `password_file`).
//!
//! The password is checked against its argon2 hash, which is slow by
//! design: off the runtime's threads, one check at a time (guessing costs
//! the guesser, never labd's other work), and a credential that passed
//! is remembered by its SHA-256, so a page's requests and its event
//! stream cost one check, not one each.

use std::sync::Mutex;

use actix_web::http::header::Header;
use actix_web::HttpRequest;
use actix_web_httpauth::headers::authorization::{Authorization, Basic};
use sha2::{Digest, Sha256};

use crate::config::web::verify;
use crate::config::WebAuth;

/// Credentials remembered as good.
const REMEMBERED: usize = 16;

pub struct Auth {
    user: String,
    hash: String,
    good: Mutex<Vec<[u8; 32]>>,
    checks: tokio::sync::Semaphore,
}

impl Auth {
    pub fn new(cfg: &WebAuth) -> Auth {
        Auth {
            user: cfg.user.clone(),
            hash: cfg.hash.clone(),
            good: Mutex::default(),
            checks: tokio::sync::Semaphore::new(1),
        }
    }

    /// Whether `req` carries the configured user and password.
    pub async fn allows(&self, req: &HttpRequest) -> bool {
        let Ok(h) = Authorization::<Basic>::parse(req) else { return false };
        let basic = h.as_ref();
        let (user, password) = (basic.user_id(), basic.password().unwrap_or(""));
        // A wrong user name costs the same check as a wrong password: the
        // time of a refusal does not tell which was wrong.
        let user_ok = user == self.user;
        let digest: [u8; 32] =
            Sha256::new().chain_update(user).chain_update(b":").chain_update(password).finalize().into();
        if self.good.lock().unwrap_or_else(|e| e.into_inner()).contains(&digest) {
            return true;
        }
        let Ok(_turn) = self.checks.acquire().await else { return false };
        let (hash, password) = (self.hash.clone(), password.to_string());
        let ok = actix_web::web::block(move || verify(&hash, &password)).await.unwrap_or(false) && user_ok;
        if ok {
            let mut good = self.good.lock().unwrap_or_else(|e| e.into_inner());
            if good.len() == REMEMBERED {
                good.remove(0);
            }
            good.push(digest);
        }
        ok
    }
}
