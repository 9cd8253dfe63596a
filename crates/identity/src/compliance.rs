//! Keystone's `[security_compliance]`: account lockout after failed logins,
//! password history, minimum password age, password expiry and
//! change-upon-first-use. All off by default, as upstream.

use crate::IdentityService;
use crate::tokens::{hash_secret, verify_secret};
use crate::util::json_map;
use ferro_common::Error;
use ferro_db::entity::identity::*;
use ferro_db::{db_err, now_micros};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

const DAY_US: i64 = 86_400 * 1_000_000;

fn option(u: &user::Model, name: &str) -> bool {
    json_map(&u.options)
        .get(name)
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false)
}

/// Who is setting a password.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PasswordSetter {
    /// The user, through `POST /v3/users/{id}/password`.
    SelfService,
    /// An administrator creating or updating the user.
    Admin,
}

impl IdentityService {
    fn lockout_enabled(&self, u: &user::Model) -> bool {
        self.cfg.security_compliance.lockout_failure_attempts > 0
            && !option(u, "ignore_lockout_failure_attempts")
    }

    /// 401 when the account is locked (checked before the password, as Keystone).
    pub fn check_lockout(&self, u: &user::Model) -> Result<(), Error> {
        if !self.lockout_enabled(u) {
            return Ok(());
        }
        let sc = &self.cfg.security_compliance;
        let locked = u.failed_auth_count >= i64::from(sc.lockout_failure_attempts)
            && u.failed_auth_at
                .is_some_and(|at| at + (sc.lockout_duration as i64) * 1_000_000 > now_micros());
        if locked {
            return Err(Error::unauthorized(format!(
                "The account is locked for user: {}.",
                u.id
            )));
        }
        Ok(())
    }

    /// Counts a failed password login (a lock that has expired starts over).
    pub async fn record_auth_failure(&self, u: &user::Model) -> Result<(), Error> {
        if !self.lockout_enabled(u) {
            return Ok(());
        }
        let sc = &self.cfg.security_compliance;
        let expired = u
            .failed_auth_at
            .is_some_and(|at| at + (sc.lockout_duration as i64) * 1_000_000 <= now_micros());
        let count = if expired { 1 } else { u.failed_auth_count + 1 };
        let mut am = u.clone().into_active_model();
        am.failed_auth_count = Set(count);
        am.failed_auth_at = Set(Some(now_micros()));
        am.update(self.conn()).await.map_err(db_err)?;
        Ok(())
    }

    pub async fn record_auth_success(&self, u: &user::Model) -> Result<(), Error> {
        if u.failed_auth_count == 0 {
            return Ok(());
        }
        let mut am = u.clone().into_active_model();
        am.failed_auth_count = Set(0);
        am.failed_auth_at = Set(None);
        am.update(self.conn()).await.map_err(db_err)?;
        Ok(())
    }

    /// Validates a new password for `u` (history and minimum age apply to
    /// self-service changes only) and returns the columns to store:
    /// (hash, created_at, expires_at).
    pub async fn new_password(
        &self,
        u: Option<&user::Model>,
        password: String,
        setter: PasswordSetter,
    ) -> Result<(String, i64, Option<i64>), Error> {
        let sc = &self.cfg.security_compliance;
        let now = now_micros();
        if let (Some(u), PasswordSetter::SelfService) = (u, setter) {
            if sc.minimum_password_age > 0
                && u.password_created_at
                    .is_some_and(|t| t + i64::from(sc.minimum_password_age) * DAY_US > now)
            {
                let days = sc.minimum_password_age;
                return Err(Error::validation(format!(
                    "You cannot change your password at this time due to the minimum password age. Once you change \\
                     your password, it must be used for {days} day(s) before it can be changed. Please try again in \\
                     {days} day(s) or contact your administrator to reset your password."
                )));
            }
            if sc.unique_last_password_count > 0 {
                let recent = password_history::Entity::find()
                    .filter(password_history::Column::UserId.eq(u.id.as_str()))
                    .order_by_desc(password_history::Column::CreatedAt)
                    .limit(u64::from(sc.unique_last_password_count))
                    .all(self.conn())
                    .await
                    .map_err(db_err)?;
                let mut hashes: Vec<String> = recent.into_iter().map(|h| h.password_hash).collect();
                if let Some(cur) = &u.password_hash
                    && !hashes.contains(cur)
                {
                    hashes.insert(0, cur.clone());
                    hashes.truncate(sc.unique_last_password_count as usize);
                }
                for h in hashes {
                    if verify_secret(password.clone(), h).await {
                        return Err(Error::validation(format!(
                            "The new password cannot be identical to a previous password. The total number which \\
                             includes the new password must be unique is {}.",
                            sc.unique_last_password_count
                        )));
                    }
                }
            }
        }
        let hash = hash_secret(password, self.cfg.identity.password_hash_rounds).await?;
        let ignore_expiry = u.is_some_and(|u| option(u, "ignore_password_expiry"));
        let ignore_first_use =
            u.is_some_and(|u| option(u, "ignore_change_password_upon_first_use"));
        let expires = if setter == PasswordSetter::Admin
            && sc.change_password_upon_first_use
            && !ignore_first_use
        {
            Some(now)
        } else if sc.password_expires_days > 0 && !ignore_expiry {
            Some(now + i64::from(sc.password_expires_days) * DAY_US)
        } else {
            None
        };
        Ok((hash, now, expires))
    }

    /// Appends a stored password to the user's history.
    pub async fn remember_password(&self, user_id: &str, hash: &str, at: i64) -> Result<(), Error> {
        password_history::ActiveModel {
            id: Set(ferro_common::new_hex_id()),
            user_id: Set(user_id.into()),
            password_hash: Set(hash.into()),
            created_at: Set(at),
        }
        .insert(self.conn())
        .await
        .map_err(db_err)?;
        Ok(())
    }
}
