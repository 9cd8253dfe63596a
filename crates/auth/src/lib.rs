//! Authentication and authorization shared by every service: Keystone-format
//! Fernet tokens, the validated [`RequestContext`], and an oslo.policy-style
//! rule engine.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod context;
pub mod fernet_keys;
pub mod policy;
pub mod token;

pub use context::{
    Acting, CallerError, DomainRef, ProjectRef, RequestContext, RoleRef, TokenValidator, UserRef,
    ValidatedToken, project_caller,
};
pub use policy::Policy;
pub use token::{TokenPayload, TokenScope};
