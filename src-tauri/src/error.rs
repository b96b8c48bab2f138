//! The one error type of the app's commands. The webview receives it as JSON
//! (`{ "kind": "not_found", "message": "..." }`), so the UI can branch on `kind`
//! and show `message` as is; a bare `String` would lose the kind.

use leakwatch_core::config_form::{FormError, FormField};
use serde::Serialize;

/// What kind of failure a command met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// No such target, process or file.
    NotFound,
    /// A setting was refused: the message says which and why.
    InvalidSettings,
    /// The configuration file could not be loaded.
    Config,
    /// A protection refused the action (DESIGN.md, "Identity").
    Refused,
    /// The restart did not happen or did not finish.
    Restart,
    /// The OS could not be asked about processes.
    Probe,
    /// Reading or writing a file failed.
    Io,
    /// The feature is not available here (no autostart, no data directory).
    Unavailable,
    /// Anything else: a bug.
    Internal,
}

/// A command's failure, as the UI receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[error("{message}")]
pub struct AppError {
    pub kind: ErrorKind,
    pub message: String,
    /// The Settings form's field the error concerns, when it is one value of
    /// it (the message then says what that field needs, in words).
    pub field: Option<FormField>,
}

impl AppError {
    /// An error of `kind` saying `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), field: None }
    }
}

impl From<leakwatch_core::api::ClientError> for AppError {
    fn from(e: leakwatch_core::api::ClientError) -> Self {
        use leakwatch_core::api::ClientError;
        let kind = match &e {
            ClientError::NoEngine { .. } => ErrorKind::Unavailable,
            ClientError::Status { status, .. } if status.as_u16() == 403 => ErrorKind::Refused,
            ClientError::Status { status, .. } if matches!(status.as_u16(), 404 | 409) => {
                ErrorKind::NotFound
            }
            _ => ErrorKind::Internal,
        };
        Self::new(kind, e.message())
    }
}

impl From<leakwatch_probe::Error> for AppError {
    fn from(e: leakwatch_probe::Error) -> Self {
        Self::new(ErrorKind::Probe, e.to_string())
    }
}

impl From<leakwatch_core::config_edit::EditError> for AppError {
    fn from(e: leakwatch_core::config_edit::EditError) -> Self {
        use leakwatch_core::config_edit::EditError;
        let kind = match &e {
            EditError::Read { .. } | EditError::Write { .. } => ErrorKind::Io,
            EditError::NoSuchTarget { .. } => ErrorKind::NotFound,
            _ => ErrorKind::InvalidSettings,
        };
        Self::new(kind, e.to_string())
    }
}

impl From<FormError> for AppError {
    fn from(e: FormError) -> Self {
        match e {
            FormError::Field { field, message } => {
                Self { kind: ErrorKind::InvalidSettings, message, field: Some(field) }
            }
            FormError::Edit(e) => e.into(),
        }
    }
}

impl From<leakwatch_core::ConfigError> for AppError {
    fn from(e: leakwatch_core::ConfigError) -> Self {
        Self::new(ErrorKind::Config, e.to_string())
    }
}

impl From<leakwatch_core::actions::kill::KillError> for AppError {
    fn from(e: leakwatch_core::actions::kill::KillError) -> Self {
        use leakwatch_core::actions::kill::KillError;
        let kind = match &e {
            KillError::Refused { .. } => ErrorKind::Refused,
            KillError::NoSuchProcess { .. } => ErrorKind::NotFound,
            _ => ErrorKind::Probe,
        };
        Self::new(kind, e.to_string())
    }
}

impl From<leakwatch_core::actions::restart::RestartError> for AppError {
    fn from(e: leakwatch_core::actions::restart::RestartError) -> Self {
        Self::new(ErrorKind::Restart, e.to_string())
    }
}

impl From<std::io::Error> for AppError {
    fn from(e: std::io::Error) -> Self {
        Self::new(ErrorKind::Io, e.to_string())
    }
}

impl From<tauri::Error> for AppError {
    fn from(e: tauri::Error) -> Self {
        Self::new(ErrorKind::Internal, e.to_string())
    }
}
