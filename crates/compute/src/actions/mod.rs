//! The server actions' service layer (`POST /servers/{id}/action`): one
//! typed command per action, carrying its parsed arguments, and one
//! function per action that decides (Nova's `check_instance_state` rules,
//! locks, policy, quotas) and starts the work on the instance's host.
//! Handlers (`http::actions`) parse a body into a [`ServerCommand`] and
//! render the [`Outcome`]; nothing here knows about HTTP.
mod admin;
mod console;
mod guard;
mod power;
mod rebuild;
mod resize;
mod shelve;
mod snapshot;

pub use console::console_url;
pub use guard::record;
pub use rebuild::Rebuild;
pub use snapshot::{Backup, NewImage};

use crate::ComputeService;
use crate::caller::Caller;
use crate::error::NResult;
use crate::model::Instance;
use std::sync::Arc;

/// The power transitions that differ only in their states and agent call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Power {
    Stop,
    Start,
    Pause,
    Unpause,
    Suspend,
    Resume,
}

/// What `os-resetState` may set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetTo {
    Active,
    Error,
}

/// One server action with its arguments, parsed and syntactically valid.
#[derive(Clone, Debug)]
pub enum ServerCommand {
    Power(Power),
    Reboot {
        hard: bool,
    },
    Lock {
        reason: Option<String>,
    },
    Unlock,
    Rescue {
        admin_pass: Option<String>,
        image: Option<String>,
    },
    Unrescue,
    /// The last `lines` lines of the console log (all when None).
    ConsoleOutput {
        lines: Option<usize>,
    },
    /// A remote console URL (`os-getVNCConsole` and its siblings).
    GetConsole {
        kind: String,
    },
    InjectNetworkInfo,
    ResetState(ResetTo),
    ForceDelete,
    Restore,
    ChangePassword {
        admin_pass: String,
    },
    CreateImage(NewImage),
    Rebuild(Box<Rebuild>),
    Resize {
        flavor_id: String,
        disk_config: Option<String>,
    },
    Migrate {
        host: Option<String>,
    },
    ConfirmResize,
    RevertResize,
    Shelve,
    ShelveOffload,
    /// `availability_zone`: absent (None), a zone, or null to unpin
    /// (`Some(None)`, 2.91); `host` (2.91, admins).
    Unshelve {
        availability_zone: Option<Option<String>>,
        host: Option<String>,
    },
    /// `addSecurityGroup`/`removeSecurityGroup` on a cloud without a
    /// Networking service (with one, the handler proxies to it).
    SecurityGroup {
        name: String,
        add: bool,
    },
    /// `os-migrateLive` and `evacuate` (by their body key).
    LiveMigrate {
        action: String,
    },
}

/// What an accepted action answers.
#[derive(Debug)]
pub enum Outcome {
    Accepted,
    /// No content (confirmResize).
    Done,
    /// The rescue password.
    AdminPass(String),
    ConsoleOutput(String),
    Console {
        kind: String,
        url: String,
    },
    /// The snapshot's or backup's image id.
    Image(String),
    /// The instance as the rebuild left it, and its new password.
    Rebuilt {
        instance: Box<Instance>,
        admin_pass: String,
    },
}

/// Runs `cmd` on the instance `id` for `c`.
pub async fn run(
    svc: &Arc<ComputeService>,
    c: &Caller,
    id: &str,
    cmd: ServerCommand,
) -> NResult<Outcome> {
    match cmd {
        ServerCommand::Power(p) => power::power(svc, c, id, p).await,
        ServerCommand::Reboot { hard } => power::reboot(svc, c, id, hard).await,
        ServerCommand::Lock { reason } => admin::lock(svc, c, id, reason).await,
        ServerCommand::Unlock => admin::unlock(svc, c, id).await,
        ServerCommand::Rescue { admin_pass, image } => {
            power::rescue(svc, c, id, admin_pass, image).await
        }
        ServerCommand::Unrescue => power::unrescue(svc, c, id).await,
        ServerCommand::ConsoleOutput { lines } => console::output(svc, c, id, lines).await,
        ServerCommand::GetConsole { kind } => console::remote(svc, c, id, kind).await,
        ServerCommand::InjectNetworkInfo => admin::inject_network_info(svc, c, id),
        ServerCommand::ResetState(to) => admin::reset_state(svc, c, id, to).await,
        ServerCommand::ForceDelete => admin::force_delete(svc, c, id).await,
        ServerCommand::Restore => admin::restore(svc, c, id),
        ServerCommand::ChangePassword { admin_pass } => {
            admin::change_password(svc, c, id, admin_pass).await
        }
        ServerCommand::CreateImage(n) => snapshot::create_image(svc, c, id, n).await,
        ServerCommand::Rebuild(r) => rebuild::rebuild(svc, c, id, *r).await,
        ServerCommand::Resize {
            flavor_id,
            disk_config,
        } => resize::resize_to(svc, c, id, flavor_id, disk_config).await,
        ServerCommand::Migrate { host } => resize::migrate(svc, c, id, host).await,
        ServerCommand::ConfirmResize => resize::confirm_resize(svc, c, id).await,
        ServerCommand::RevertResize => resize::revert_resize(svc, c, id).await,
        ServerCommand::Shelve => shelve::shelve(svc, c, id).await,
        ServerCommand::ShelveOffload => shelve::shelve_offload(svc, c, id).await,
        ServerCommand::Unshelve {
            availability_zone,
            host,
        } => shelve::unshelve(svc, c, id, availability_zone, host).await,
        ServerCommand::SecurityGroup { name, add } => {
            admin::security_group(svc, c, id, name, add).await
        }
        ServerCommand::LiveMigrate { action } => admin::live_migrate(svc, c, id, &action),
    }
}
