//! The `leakwatch-app` binary: everything lives in the library so that the mock
//! runtime's tests reach the same code the app runs.

// No console window behind the menubar app on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() {
    leakwatch_app::run();
}
