//! The database seam: one connection type whatever the backend (SQLite by
//! default, PostgreSQL or MariaDB/MySQL by URL), the sea-orm entities and the
//! embedded migrations. Portability rules (see docs/adr/0003-storage.md): ids,
//! JSON and enums are strings, timestamps are i64 microseconds since the epoch
//! (so MySQL's second-precision DATETIME never truncates revocation times), no
//! RETURNING, no SELECT ... FOR UPDATE.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod docs;
pub mod entity;
pub mod migration;

use ferro_common::Error;
pub use sea_orm;
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbBackend, DbErr};
use sea_orm_migration::MigratorTrait;
use std::time::Duration;

/// A handle on the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    pub conn: DatabaseConnection,
}

impl Db {
    /// Connects to `url`. SQLite files are created on demand and put in WAL
    /// mode with a busy timeout, so concurrent writers queue instead of failing.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Db, Error> {
        let mut opts = ConnectOptions::new(url.to_string());
        opts.sqlx_logging(false)
            .connect_timeout(Duration::from_secs(10))
            .acquire_timeout(Duration::from_secs(30));
        if url.starts_with("sqlite:") {
            // One writer at a time is SQLite's model; WAL lets readers go on.
            opts.max_connections(max_connections.clamp(1, 8))
                .map_sqlx_sqlite_opts(|o| {
                    o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                        .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                        .busy_timeout(Duration::from_secs(30))
                        .foreign_keys(false)
                        .create_if_missing(true)
                });
        } else {
            opts.max_connections(max_connections.max(1));
        }
        let conn = Database::connect(opts)
            .await
            .map_err(|e| db_err_ctx(e, "connecting to the database"))?;
        Ok(Db { conn })
    }

    pub fn backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    /// Applies every pending migration (`ferrostack db upgrade`).
    pub async fn upgrade(&self) -> Result<(), Error> {
        migration::Migrator::up(&self.conn, None)
            .await
            .map_err(|e| db_err_ctx(e, "running migrations"))
    }

    /// Names of the applied migrations, oldest first.
    pub async fn applied_migrations(&self) -> Result<Vec<String>, Error> {
        let applied = migration::Migrator::get_applied_migrations(&self.conn)
            .await
            .map_err(|e| db_err_ctx(e, "reading migrations"))?;
        Ok(applied.iter().map(|m| m.name().to_string()).collect())
    }
}

/// Maps a database error to the public error; unique-constraint violations
/// become 409 so racing duplicate creates behave like sequential ones.
pub fn db_err(e: DbErr) -> Error {
    db_err_ctx(e, "database operation")
}

pub fn db_err_ctx(e: DbErr, what: &str) -> Error {
    if is_unique_violation(&e) {
        return Error::conflict(
            "Conflict occurred attempting to store the resource: a duplicate entry exists.",
        );
    }
    Error::internal(format!("{what}: {e}"))
}

pub fn is_unique_violation(e: &DbErr) -> bool {
    matches!(
        e.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

/// Current time as stored: microseconds since the epoch.
pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

pub fn micros_to_time(us: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_micros(us).unwrap_or_default()
}
