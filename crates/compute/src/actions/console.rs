//! The console log (read from the instance's host) and remote console URLs.
use super::Outcome;
use crate::ComputeService;
use crate::caller::Caller;
use crate::error::{NResult, NovaError};
use crate::ops;
use crate::servers::get_instance;
use ferro_rpc::RpcError;
use ferro_rpc::compute::{ComputeReply, ComputeRequest};
use std::sync::Arc;

pub(super) async fn output(
    svc: &Arc<ComputeService>,
    c: &Caller,
    id: &str,
    lines: Option<usize>,
) -> NResult<Outcome> {
    let i = get_instance(svc, c, id)?;
    let host = i
        .host
        .clone()
        .filter(|_| !matches!(i.vm_state.as_str(), "building" | "shelved_offloaded"))
        .ok_or_else(|| {
            NovaError::conflict(format!(
                "Instance {id} has not been scheduled to a host yet."
            ))
        })?;
    let out = ops::call_agent(
        svc,
        &host,
        ComputeRequest::ConsoleOutput {
            uuid: id.to_string(),
        },
        Some(&c.request_id),
    )
    .await
    .map_err(|e| {
        NovaError::conflict(format!(
            "Console log output could not be retrieved for instance {id}: {e}"
        ))
    })?;
    let text = match out {
        ComputeReply::ConsoleOutput { output } => output,
        other => {
            return Err(NovaError::new(
                500,
                format!("unexpected answer to console_output: {other:?}"),
            ));
        }
    };
    Ok(Outcome::ConsoleOutput(tail(&text, lines)))
}

/// The last `n` lines of `text` (all of it when None).
fn tail(text: &str, n: Option<usize>) -> String {
    match n {
        Some(n) => {
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(n);
            lines[start..].join("\n")
        }
        None => text.to_string(),
    }
}

pub(super) async fn remote(
    svc: &Arc<ComputeService>,
    c: &Caller,
    id: &str,
    kind: String,
) -> NResult<Outcome> {
    let i = get_instance(svc, c, id)?;
    if i.vm_state != "active" {
        return Err(NovaError::conflict(format!("Instance {id} is not ready")));
    }
    let url = console_url(svc, c, &i, &kind).await?;
    Ok(Outcome::Console { kind, url })
}

/// A one-time URL of the instance's console of `kind`, granted by the
/// agent of its host (the console proxy there checks the token).
pub async fn console_url(
    svc: &ComputeService,
    c: &Caller,
    i: &crate::model::Instance,
    kind: &str,
) -> NResult<String> {
    let id = &i.uuid;
    let host = i
        .host
        .clone()
        .ok_or_else(|| NovaError::conflict(format!("Instance {id} is not ready")))?;
    let reply = ops::call_agent(
        svc,
        &host,
        ComputeRequest::Console {
            uuid: id.clone(),
            kind: kind.to_string(),
        },
        Some(&c.request_id),
    )
    .await;
    match reply {
        Ok(ComputeReply::Console { url }) => Ok(url),
        Ok(other) => Err(NovaError::new(
            500,
            format!("unexpected answer to console: {other:?}"),
        )),
        Err(RpcError::Unsupported(why)) => {
            tracing::info!(instance = %id, "no {kind} console: {why}");
            Err(NovaError::bad(format!("Unavailable console type {kind}.")))
        }
        Err(RpcError::NotFound(_)) => Err(NovaError::not_found(format!(
            "Instance {id} could not be found."
        ))),
        Err(e) => Err(NovaError::conflict(format!(
            "Instance {id} is not ready: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(super::tail("a\nb\nc", Some(2)), "b\nc");
        assert_eq!(super::tail("a\nb", Some(5)), "a\nb");
        assert_eq!(super::tail("a\nb", None), "a\nb");
        assert_eq!(super::tail("a\nb", Some(0)), "");
    }
}
