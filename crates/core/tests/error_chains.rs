//! Regression (issue 10, item 18): error messages repeated their cause three
//! times. An error that printed its OS error in its own message and also gave it
//! back as `source()` showed it twice in a chain printed with its causes
//! (`anyhow`'s `{:#}`, `leakwatch`'s one-line errors), and a wrapper around it a
//! third time. Each error here names its cause once, however it is printed.

use leakwatch_core::actions::restart::RestartError;
use leakwatch_core::actions::service::ServiceError;
use leakwatch_core::store::StoreError;
use std::error::Error;
use std::path::PathBuf;

/// The error and every source below it, as `{:#}` joins them.
fn chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn cause() -> std::io::Error {
    std::io::Error::other("disk on fire")
}

fn assert_named_once(error: &dyn Error) {
    let text = chain(error);
    assert_eq!(text.matches("disk on fire").count(), 1, "{text}");
}

#[test]
fn a_store_error_names_its_cause_once() {
    assert_named_once(&StoreError::Io {
        path: PathBuf::from("/data"),
        doing: "creating the data directory",
        cause: cause(),
    });
}

#[test]
fn a_restart_error_names_its_cause_once_even_when_wrapping_another() {
    assert_named_once(&RestartError::Spawn {
        target: "web".to_owned(),
        program: "python3".to_owned(),
        cause: cause(),
    });
    assert_named_once(&RestartError::Service {
        target: "web".to_owned(),
        cause: ServiceError::Spawn { program: "launchctl", cause: cause() },
    });
}
