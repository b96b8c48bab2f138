//! `cargo xtask e2e`: the menubar app end to end, on Linux, under Xvfb, driven
//! over WebDriver (`tauri-driver` in front of WebKitGTK's `WebKitWebDriver`).
//!
//! The app starts in end-to-end mode (`LEAKWATCH_E2E=1`: the popover is an
//! ordinary window, open from the start) with a config in a temporary
//! directory watching `leaky`, an `lw-helper` that leaks an epoll every 200 ms,
//! with a `command` restart that starts a fresh one. It checks that the popover
//! shows (as text in the real webview) the target with its pid, its count
//! against the limit and a slope, with the count rising and the slope positive
//! in the status; that Restart gives the target a new pid, shown in the
//! popover; and that an orphan tree made here is listed and, after Clean up, no
//! longer is and its processes are gone. The actions go through the UI as a
//! user takes them: WebDriver clicks the real buttons (found by their
//! `data-testid`s), reads the confirmation's plan and confirms it, so a broken
//! button or dialog fails here. Only read-only status checks call the app's IPC
//! directly. Screenshots (light, dark, the orphan list) go to `docs/`.
//!
//! Then a new user's first run ([`first_run`]): an empty home directory, no
//! config, Watch on a leaking helper's automatic-mode row, the row becoming the
//! named target and turning warning, the tray icon following (read through the
//! app's `get_tray_icon`: a headless tray host cannot be looked at), with
//! screenshots docs/first-run.png and docs/watch-dialog.png; and a start on a
//! broken config ([`broken_config`]) that shows the file, line and key and keeps
//! running. Last, the daemon first ([`daemon_first`]): `leakwatch daemon` owns
//! the data directory, the app started after it attaches and its popover shows
//! the daemon's target under a "daemon" badge; when the daemon is SIGKILLed the
//! app takes over and the badge goes.
//!
//! The WebDriver client is a few lines of HTTP/1.1 over `TcpStream`: the
//! protocol is JSON over plain HTTP on 127.0.0.1, and a crate would add more
//! build time than code.

use crate::util::{cargo, ensure_debian_packages, run, workspace_root};
use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PACKAGES: [&str; 3] = ["webkit2gtk-driver", "xvfb", "xauth"];
const TAURI_DRIVER_VERSION: &str = "2.1.0";
/// tauri-driver's port, WebKitWebDriver's (the next one) and Xvfb's display:
/// `LEAKWATCH_E2E_PORT` and `LEAKWATCH_E2E_DISPLAY` move them, so two runs on
/// one machine do not talk to each other's driver.
fn driver_port() -> u16 {
    std::env::var("LEAKWATCH_E2E_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(4444)
}

fn display() -> String {
    std::env::var("LEAKWATCH_E2E_DISPLAY").unwrap_or_else(|_| ":99".to_owned())
}

/// Kills (SIGKILL, whole process group) and reaps a child on drop.
struct Guarded(Child, &'static str);

impl Drop for Guarded {
    fn drop(&mut self) {
        let pid = self.0.id();
        // SAFETY: kill(2) with a negative pid signals our own child's process
        // group; it has no memory-safety preconditions.
        unsafe {
            libc_kill(-i32::try_from(pid).unwrap_or(i32::MAX), 9);
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
        eprintln!("e2e: stopped {}", self.1);
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

pub(crate) fn run_e2e() -> Result<()> {
    if !cfg!(target_os = "linux") {
        bail!("the end-to-end test runs on Linux (WebKitGTK's WebDriver)");
    }
    ensure_debian_packages(&crate::ui::APP_PACKAGES)?;
    ensure_debian_packages(&PACKAGES)?;
    let root = workspace_root();
    let driver = tauri_driver(&root)?;
    run(cargo().args(["build", "--locked", "-p", "leakwatch-test-helper", "-p", "leakwatch"]))?;
    let app = crate::ui::build_app(false)?;
    let helper = crate::util::target_dir().join("debug/lw-helper");

    let tmp = std::env::temp_dir().join(format!("leakwatch-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let pidfile = tmp.join("leaky.pid");
    let config = tmp.join("config.toml");
    std::fs::write(&config, config_text(&helper, &pidfile))?;

    // The leaking server, started the way its restart command starts it.
    let leaky = Guarded(
        Command::new("sh")
            .args(["-c", &start_leaky(&helper, &pidfile)])
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .context("could not start the leaking helper")?,
        "the leaking helper",
    );
    let first_pid = wait_for_pid(&pidfile)?;

    let _xvfb = Guarded(
        Command::new("Xvfb")
            .args([&display(), "-screen", "0", "1280x800x24", "-nolisten", "tcp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .context("could not start Xvfb")?,
        "Xvfb",
    );
    std::thread::sleep(Duration::from_millis(500));
    let env = DriverEnv { driver: &driver, config: Some(&config), home: None, tmp: &tmp };
    let light = start_driver(&env, false)?;
    let id = open_session(&app)?;
    let mut result = checks(&id, &root, &helper, &pidfile, first_pid);
    let _ = request("DELETE", &format!("/session/{id}"), &Value::Null);
    drop(light);
    if result.is_ok() {
        result = dark_screenshot(&env, &app, &root, &helper);
    }
    drop(leaky);
    if let Ok(pid) = read_pid(&pidfile) {
        // The restarted helper lives in its own session: stop it by pid.
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc_kill(i32::try_from(pid).unwrap_or(0).max(2), 9);
        }
    }
    if result.is_ok() {
        result = first_run(&driver, &app, &root, &helper, &tmp);
    }
    if result.is_ok() {
        result = broken_config(&driver, &app, &tmp);
    }
    if result.is_ok() {
        result = daemon_first(&driver, &app, &helper, &tmp);
    }
    let _ = std::fs::remove_dir_all(&tmp);
    result?;
    eprintln!("xtask e2e: passed");
    Ok(())
}

/// What every tauri-driver is started with.
struct DriverEnv<'a> {
    driver: &'a Path,
    /// `LEAKWATCH_CONFIG`; none: the platform's default path, under `home`.
    config: Option<&'a Path>,
    /// A home directory of its own (a new user's): no `XDG_*` overrides, the
    /// data directory under it.
    home: Option<&'a Path>,
    tmp: &'a Path,
}

/// The descriptor limit of the first run's helper: with 1000 epolls held and
/// one more every 500 ms (7200/h) its time to the limit is about 2 h, between
/// the built-in eta rule's critical (1 h) and warning (6 h) thresholds.
const FIRST_RUN_LIMIT: u32 = 16384;

/// A new user's first run: an empty home directory, no config. The app starts
/// in automatic mode and lists the top holders, among them an `lw-helper`
/// holding 1000 epolls and leaking one every 2 s (its time to the
/// limit, over 8 h, is calm); the user creates the config
/// file with just a comment, then Watch on the helper's row (name edited to
/// `leaky`) writes a `[[watch]]` into it, keeping the comment, and the row
/// becomes the target `leaky`. The helper then leaks fast enough for its time to
/// the limit to fall under 6 h: the row turns warning and the tray icon, ok
/// until then, turns warning too. Then Settings adds a target by hand, after a
/// field error. Screenshots: docs/first-run.png, docs/watch-dialog.png and
/// docs/settings-field-error.png.
fn first_run(driver: &Path, app: &Path, root: &Path, helper: &Path, tmp: &Path) -> Result<()> {
    let home = tmp.join("first-run-home");
    std::fs::create_dir_all(&home)?;
    let pidfile = tmp.join("first-run.pid");
    let mut leaky = Guarded(
        Command::new("sh")
            .args([
                "-c",
                &format!(
                    "ulimit -n {FIRST_RUN_LIMIT} && echo $$ > {} && exec {} --stay \
                     --exec 'open epoll 1000' --exec 'leak epoll 2000' >/dev/null",
                    quote(&pidfile),
                    quote(helper)
                ),
            ])
            .stdin(Stdio::piped())
            .process_group(0)
            .spawn()
            .context("could not start the first run's helper")?,
        "the first run's helper",
    );
    let pid = wait_for_pid(&pidfile)?;
    let env = DriverEnv { driver, config: None, home: Some(&home), tmp };
    let _driver = start_driver(&env, false)?;
    let id = open_session(app)?;
    let result = first_run_checks(&id, root, &home, pid, &mut leaky.0);
    let _ = request("DELETE", &format!("/session/{id}"), &Value::Null);
    result
}

fn first_run_checks(
    id: &str,
    root: &Path,
    home: &Path,
    pid: u32,
    helper: &mut Child,
) -> Result<()> {
    // Automatic mode: the helper is one of the top holders, with its own row.
    let auto_name =
        wait_until_value(Duration::from_secs(60), "the helper among the top holders", || {
            let status = invoke(id, "get_status", &json!({}))?;
            if status["config"]["automatic"].as_bool() != Some(true) {
                bail!("a first run should be in automatic mode: {}", status["config"]);
            }
            Ok(status["targets"].as_array().and_then(|targets| {
                targets
                    .iter()
                    .find(|t| t["process"]["pid"].as_u64() == Some(u64::from(pid)))
                    .and_then(|t| t["name"].as_str().map(str::to_owned))
            }))
        })?;
    eprintln!("e2e: first run: the helper is listed as `{auto_name}`");
    let row = format!(r#"[data-testid="target-row"][data-target="{auto_name}"]"#);
    wait_until(Duration::from_secs(20), "the popover to list the helper", || {
        let text = elements(id, &row)?.first().map(|_| element_text(id, &row)).transpose()?;
        Ok(text.is_some_and(|t| t.contains(&pid.to_string()) && t.contains("epoll")))
    })
    .with_context(|| format!("the popover shows: {}", page_text(id).unwrap_or_default()))?;
    // The tray is calm before anything is watched (a busy machine's holders may
    // flicker: wait for it).
    wait_until(Duration::from_secs(90), "the tray icon to show ok", || {
        Ok(invoke(id, "get_tray_icon", &json!({}))? == json!("ok"))
    })?;
    screenshot(id, &root.join("docs/first-run.png"))?;

    // The user starts a config file by hand: a comment, nothing else (a valid
    // empty config: still automatic mode).
    let config = home.join(".config/leakwatch/config.toml");
    if config.exists() {
        bail!("the app created {} on its own", config.display());
    }
    std::fs::create_dir_all(config.parent().unwrap_or(home))?;
    let comment = "# my servers (kept by Watch)";
    std::fs::write(&config, format!("{comment}\n"))?;

    // Watch: the dialog proposes a name and a locator; the name is edited.
    let summary = format!(r#"{row} [data-testid="target-summary"]"#);
    click_until(id, &summary, || expanded(id, &summary, true))?;
    click_until(id, &format!(r#"{row} [data-testid="watch-button"]"#), || {
        Ok(!elements(id, r#"[data-testid="watch-dialog"]"#)?.is_empty())
    })?;
    let dialog = element_text(id, r#"[data-testid="watch-dialog"]"#)?;
    eprintln!("e2e: watch dialog: {dialog}");
    if !dialog.contains("matches now") || dialog.contains("matches now: nothing") {
        bail!("the Watch dialog does not say what its locator matches: {dialog}");
    }
    screenshot(id, &root.join("docs/watch-dialog.png"))?;
    let name = element(id, r#"[data-testid="watch-name"]"#)?;
    request("POST", &format!("/session/{id}/element/{name}/clear"), &json!({}))?;
    request("POST", &format!("/session/{id}/element/{name}/value"), &json!({ "text": "leaky" }))?;
    click_until(id, r#"[data-testid="watch-save"]"#, || {
        Ok(elements(id, r#"[data-testid="watch-dialog"]"#)?.is_empty())
    })?;
    if let Ok(error) = element_text(id, r#"[data-testid="watch-error"]"#) {
        bail!("Watch failed: {error}");
    }
    let text = std::fs::read_to_string(&config)?;
    eprintln!("e2e: the config after Watch:\n{text}");
    if !text.starts_with(comment)
        || !text.contains("[[watch]]")
        || !text.contains(r#"name = "leaky""#)
    {
        bail!("Watch did not add `leaky` under the user's comment: {text}");
    }
    // The row becomes the target, on the same process (`leaky[pid]` should the
    // pattern also match another lw-helper running on this machine).
    let row_name = wait_until_value(Duration::from_secs(40), "the row to become `leaky`", || {
        let status = invoke(id, "get_status", &json!({}))?;
        let name = status["targets"].as_array().and_then(|targets| {
            targets
                .iter()
                .find(|t| {
                    t["target"] == "leaky" && t["process"]["pid"].as_u64() == Some(u64::from(pid))
                })
                .and_then(|t| t["name"].as_str().map(str::to_owned))
        });
        Ok(match name {
            Some(name) => {
                let css = format!(r#"[data-testid="target-row"][data-target="{name}"]"#);
                (!elements(id, &css)?.is_empty()).then_some(name)
            }
            None => None,
        })
    })
    .with_context(|| format!("the popover shows: {}", page_text(id).unwrap_or_default()))?;
    let leaky = &format!(r#"[data-testid="target-row"][data-target="{row_name}"]"#);

    // Now it leaks fast: about 2 h to its limit, under the eta rule's 6 h.
    let stdin = helper.stdin.as_mut().ok_or_else(|| anyhow!("the helper has no stdin"))?;
    stdin.write_all(b"stop-leak\nleak epoll 500\n")?;
    stdin.flush()?;
    wait_until(Duration::from_secs(240), "the row `leaky` to turn warning", || {
        has_attribute(id, leaky, "data-state", "warning")
    })
    .with_context(|| format!("the popover shows: {}", page_text(id).unwrap_or_default()))?;
    let row_text = element_text(id, leaky)?;
    eprintln!("e2e: first run: {row_text}");
    wait_until(Duration::from_secs(30), "the tray icon to turn warning", || {
        Ok(invoke(id, "get_tray_icon", &json!({}))? == json!("warning"))
    })?;
    eprintln!("e2e: first run: watched, warning, tray warning");
    settings_adds_a_target(id, root, &config, comment)
}

/// Settings: a target added by hand, with a bad port first. The refusal, from
/// the config parser, is shown next to the port field in words, and nothing is
/// written; corrected, the target is saved under the user's comment.
/// Screenshot: docs/settings-field-error.png.
fn settings_adds_a_target(id: &str, root: &Path, config: &Path, comment: &str) -> Result<()> {
    let before = std::fs::read_to_string(config)?;
    click_until(id, r#"[data-testid="settings-button"]"#, || {
        Ok(!elements(id, r#"[data-testid="add-target"]"#)?.is_empty())
    })?;
    click_until(id, r#"[data-testid="add-target"]"#, || {
        Ok(!elements(id, r#"[data-testid="target-editor"]"#)?.is_empty())
    })?;
    let type_into = |css: &str, text: &str| -> Result<()> {
        let eid = element(id, css)?;
        request("POST", &format!("/session/{id}/element/{eid}/clear"), &json!({}))?;
        request("POST", &format!("/session/{id}/element/{eid}/value"), &json!({ "text": text }))?;
        Ok(())
    };
    type_into(r#"[data-testid="target-name"]"#, "by-hand")?;
    type_into(r#"[data-testid="target-locator"]"#, "99999")?;
    let error = r#"[data-testid="field-error-locator"]"#;
    click_until(id, r#"[data-testid="target-save"]"#, || Ok(!elements(id, error)?.is_empty()))?;
    let message = element_text(id, error)?;
    eprintln!("e2e: settings: the port field says: {message}");
    if !message.contains("TCP port") || message.contains("config.toml") {
        bail!("the port's error is not in words next to it: {message}");
    }
    if !has_attribute(id, r#"[data-testid="target-locator"]"#, "aria-invalid", "true")? {
        bail!("the refused port field is not marked invalid");
    }
    if std::fs::read_to_string(config)? != before {
        bail!("a refused target was written to {}", config.display());
    }
    screenshot(id, &root.join("docs/settings-field-error.png"))?;
    type_into(r#"[data-testid="target-locator"]"#, "8787")?;
    click_until(id, r#"[data-testid="target-save"]"#, || {
        Ok(elements(id, r#"[data-testid="target-editor"]"#)?.is_empty())
    })?;
    let text = std::fs::read_to_string(config)?;
    if !text.starts_with(comment)
        || !text.contains(r#"name = "by-hand""#)
        || !text.contains("port = 8787")
    {
        bail!("Settings did not add `by-hand` under the user's comment: {text}");
    }
    let list = element_text(id, r#"[data-testid="settings-targets"]"#)?;
    if !list.contains("by-hand") {
        bail!("Settings does not list the new target: {list}");
    }
    eprintln!("e2e: settings: added `by-hand` by hand, after a field error");
    Ok(())
}

/// A config with a type error at start: the app keeps running (on the built-in
/// defaults) and its popover names the file, the line and the key.
fn broken_config(driver: &Path, app: &Path, tmp: &Path) -> Result<()> {
    let home = tmp.join("broken-home");
    let config = home.join(".config/leakwatch/config.toml");
    std::fs::create_dir_all(config.parent().unwrap_or(&home))?;
    std::fs::write(&config, "# a typo on line 3\n[defaults]\ninterval = 5\n")?;
    let env = DriverEnv { driver, config: None, home: Some(&home), tmp };
    let _driver = start_driver(&env, false)?;
    let id = open_session(app)?;
    let banner = r#"[data-testid="config-error"]"#;
    let shown = element_text(&id, banner).and_then(|text| {
        eprintln!("e2e: broken config: {text}");
        let expected = ["~/.config/leakwatch/config.toml:3", "defaults.interval"];
        match expected.iter().find(|e| !text.contains(*e)) {
            Some(missing) => bail!("the config error does not say `{missing}`: {text}"),
            None => Ok(()),
        }
    });
    // Still running: it answers, and keeps answering.
    let running = shown.and_then(|()| {
        std::thread::sleep(Duration::from_secs(3));
        let status = invoke(&id, "get_status", &json!({}))?;
        if status["config"]["error"].is_null() {
            bail!("the status lost the config error: {}", status["config"]);
        }
        Ok(())
    });
    let _ = request("DELETE", &format!("/session/{id}"), &Value::Null);
    running
}

/// The daemon started first, then the app: the app attaches (no second engine),
/// its popover lists the daemon's target with a "daemon" badge, and the status
/// it shows is the daemon's. SIGKILL the daemon: the app takes over (its own
/// engine, the badge gone) within seconds.
fn daemon_first(driver: &Path, app: &Path, helper: &Path, tmp: &Path) -> Result<()> {
    let tmp = tmp.join("daemon-first");
    std::fs::create_dir_all(&tmp)?;
    let pidfile = tmp.join("served.pid");
    let config = tmp.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[notify]\nenabled = false\n\n[defaults]\ninterval = \"1s\"\n\n[[watch]]\n\
             name = \"served-by-daemon\"\npidfile = {:?}\n",
            pidfile.display().to_string()
        ),
    )?;
    let _served = Guarded(
        Command::new("sh")
            .args([
                "-c",
                &format!(
                    "echo $$ > {}; exec {} --stay </dev/null >/dev/null",
                    quote(&pidfile),
                    quote(helper)
                ),
            ])
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .context("could not start the daemon's helper")?,
        "the daemon's helper",
    );
    wait_for_pid(&pidfile)?;
    let leakwatch = crate::util::target_dir().join("debug/leakwatch");
    let mut daemon = Guarded(
        Command::new(&leakwatch)
            .arg("daemon")
            .env("LEAKWATCH_CONFIG", &config)
            .env("LEAKWATCH_DATA_DIR", tmp.join("data"))
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .with_context(|| format!("could not start {} daemon", leakwatch.display()))?,
        "leakwatch daemon",
    );
    let daemon_pid = daemon.0.id();
    let socket = tmp.join("data/engine.sock");
    wait_until(Duration::from_secs(60), "the daemon's socket", || Ok(socket.exists()))?;
    let env = DriverEnv { driver, config: Some(&config), home: None, tmp: &tmp };
    let _driver = start_driver(&env, false)?;
    let id = open_session(app)?;
    let result = (|| -> Result<()> {
        let badge = r#"[data-testid="engine-badge"]"#;
        wait_until(Duration::from_secs(40), "the popover's daemon badge", || {
            Ok(element_text(&id, badge).is_ok_and(|text| text.trim() == "daemon"))
        })?;
        wait_until(Duration::from_secs(40), "the daemon's target in the popover", || {
            Ok(page_text(&id)?.contains("served-by-daemon"))
        })?;
        let status = invoke(&id, "get_status", &json!({}))?;
        if status["engine"]["face"] != "daemon"
            || status["engine"]["pid"] != daemon_pid
            || status["own"]["pid"] != daemon_pid
        {
            bail!(
                "the app shows another engine than the daemon {daemon_pid}: {}",
                status["engine"]
            );
        }
        eprintln!("e2e: the app attached to the daemon (pid {daemon_pid}), badge shown");
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc_kill(i32::try_from(daemon_pid).unwrap_or(i32::MAX), 9);
        }
        let _ = daemon.0.wait();
        wait_until(Duration::from_secs(40), "the app to take over from the killed daemon", || {
            let status = invoke(&id, "get_status", &json!({}))?;
            Ok(status["engine"]["face"] == "app" && status["tick"].as_u64() > Some(0))
        })?;
        wait_until(Duration::from_secs(20), "the badge to go", || {
            Ok(elements(&id, badge)?.is_empty())
        })?;
        if !page_text(&id)?.contains("served-by-daemon") {
            bail!("the app lost the target when it took over");
        }
        eprintln!("e2e: the app took over from the SIGKILLed daemon");
        Ok(())
    })();
    let _ = request("DELETE", &format!("/session/{id}"), &Value::Null);
    result
}

/// Starts tauri-driver (the app inherits its environment), in a dark GTK theme
/// (so `prefers-color-scheme: dark`) when `dark`.
fn start_driver(env: &DriverEnv<'_>, dark: bool) -> Result<Guarded> {
    let mut cmd = Command::new(env.driver);
    let native_port = driver_port().saturating_add(1).to_string();
    cmd.args(["--port", &driver_port().to_string(), "--native-port", &native_port])
        .args(["--native-driver", "/usr/bin/WebKitWebDriver"])
        .env("DISPLAY", display())
        .env("LEAKWATCH_E2E", "1")
        // A POSIX locale on purpose: WebKit turns it into a language tag Intl
        // rejects, which once left the popover blank (ui/src/lib/locale-guard.ts).
        .env("LANG", "C.UTF-8")
        .env_remove("LC_ALL")
        .process_group(0);
    match env.config {
        Some(config) => cmd.env("LEAKWATCH_CONFIG", config),
        None => cmd.env_remove("LEAKWATCH_CONFIG"),
    };
    match env.home {
        Some(home) => cmd
            .env("HOME", home)
            .env_remove("LEAKWATCH_DATA_DIR")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_DATA_HOME")
            .env_remove("XDG_STATE_HOME")
            .env_remove("XDG_CACHE_HOME"),
        None => cmd
            .env("LEAKWATCH_DATA_DIR", env.tmp.join("data"))
            .env("XDG_CONFIG_HOME", env.tmp.join("xdg")),
    };
    if dark {
        cmd.env("GTK_THEME", "Adwaita:dark");
    }
    let guard = Guarded(cmd.spawn().context("could not start tauri-driver")?, "tauri-driver");
    wait_until(Duration::from_secs(20), "tauri-driver to listen", || {
        Ok(TcpStream::connect(("127.0.0.1", driver_port())).is_ok())
    })?;
    Ok(guard)
}

/// A WebDriver session on the app: starts it, with its popover open.
fn open_session(app: &Path) -> Result<String> {
    let session = request(
        "POST",
        "/session",
        &json!({ "capabilities": { "alwaysMatch": {
            "tauri:options": { "application": app.display().to_string() }
        } } }),
    )?;
    Ok(session["value"]["sessionId"]
        .as_str()
        .ok_or_else(|| anyhow!("no WebDriver session: {session}"))?
        .to_owned())
}

/// The popover in the dark theme, with the leaking target.
fn dark_screenshot(env: &DriverEnv<'_>, app: &Path, root: &Path, helper: &Path) -> Result<()> {
    let _driver = start_driver(env, true)?;
    let id = open_session(app)?;
    let shown = seeded_slope(&id)
        .and_then(|()| {
            wait_until(Duration::from_secs(40), "the dark popover to show leaky's slope", || {
                let text = page_text(&id)?;
                Ok(text.contains("/h") || text.contains("/min"))
            })
            .with_context(|| {
                format!("the dark popover shows: {}", page_text(&id).unwrap_or_default())
            })
        })
        .and_then(|()| {
            // The restarted webview under Xvfb paints its rows a moment after
            // the text is in the DOM: a screenshot at once shows them black.
            std::thread::sleep(Duration::from_millis(1500));
            screenshot(&id, &root.join("docs/popover-dark.png"))
        })
        .and_then(|()| dark_axe_checks(&id, root, helper));
    let _ = request("DELETE", &format!("/session/{id}"), &Value::Null);
    shown
}

/// After the app restarts, a target that leaked all along shows its slope
/// within two ticks: its series is seeded from the history, not measured anew.
fn seeded_slope(id: &str) -> Result<()> {
    let status =
        wait_until_value(Duration::from_secs(40), "the restarted app's first ticks", || {
            let status = invoke(id, "get_status", &json!({}))?;
            Ok(find_target(&status, "leaky")
                .is_some_and(|t| t["sample"].is_object())
                .then_some(status))
        })?;
    let tick = status["tick"].as_u64().unwrap_or(0);
    let slope = find_target(&status, "leaky").and_then(|t| t["slope_per_hour"].as_f64());
    let slope = match slope {
        Some(slope) => slope,
        None if tick <= 1 => {
            let next = wait_until_value(Duration::from_secs(20), "the second tick", || {
                let status = invoke(id, "get_status", &json!({}))?;
                Ok((status["tick"].as_u64().unwrap_or(0) >= 2).then_some(status))
            })?;
            let target = find_target(&next, "leaky");
            target.and_then(|t| t["slope_per_hour"].as_f64()).ok_or_else(|| {
                anyhow!("leaky shows no slope two ticks after the app restarted: {target:?}")
            })?
        }
        None => bail!("leaky shows no slope at tick {tick} after the app restarted"),
    };
    eprintln!("e2e: after the app restarted, tick {tick}: leaky's slope {slope:.0}/h (seeded)");
    Ok(())
}

/// The dark theme's views through axe-core: the main view, a detail view,
/// the restart dialog (cancelled), the clean-up dialog (cancelled; it needs an
/// orphan tree, made here) and Settings.
fn dark_axe_checks(id: &str, root: &Path, helper: &Path) -> Result<()> {
    axe_check(id, root, "the main view, dark")?;
    let (tree, members) = make_orphan_tree(id, helper)?;
    let checked = dark_cleanup_dialog(id, root, &tree);
    for pid in members {
        // The tree's processes ignore nothing: SIGKILL leaves no survivor to wait for.
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc_kill(i32::try_from(pid).unwrap_or(0).max(2), 9);
        }
    }
    checked?;
    let row = r#"[data-testid="target-row"][data-target="leaky"]"#;
    let summary = format!(r#"{row} [data-testid="target-summary"]"#);
    click_until(id, &summary, || expanded(id, &summary, true))?;
    axe_check(id, root, "a detail view, dark")?;
    click_until(id, &format!(r#"{row} [data-testid="restart-button"]"#), || plan_shown(id))?;
    cancel_focused(id, "the restart dialog (dark)")?;
    axe_check(id, root, "the restart dialog, dark")?;
    click_until(id, r#"[data-testid="cancel-button"]"#, || Ok(!plan_shown(id)?))?;
    click_until(id, r#"[data-testid="settings-button"]"#, || {
        Ok(!elements(id, r#"[data-testid="settings-button"][aria-pressed="true"]"#)?.is_empty())
    })?;
    axe_check(id, root, "Settings, dark")
}

/// issue 12: the clean-up dialog is checked in dark as well as light.
fn dark_cleanup_dialog(id: &str, root: &Path, tree: &Value) -> Result<()> {
    let root_pid = tree["root"]["pid"].as_u64().unwrap_or(0);
    let orphan_row = format!(r#"[data-testid="orphan-row"][data-root-pid="{root_pid}"]"#);
    wait_until(Duration::from_secs(20), "the dark popover to list the orphan tree", || {
        Ok(!elements(id, &orphan_row)?.is_empty())
    })?;
    let select = format!(r#"{orphan_row} [data-testid="orphan-select"]"#);
    click_until(id, &select, || has_property(id, &select, "checked", &Value::Bool(true)))?;
    click_until(id, r#"[data-testid="cleanup-button"]"#, || plan_shown(id))?;
    cancel_focused(id, "the clean-up dialog (dark)")?;
    axe_check(id, root, "the clean-up dialog, dark")?;
    click_until(id, r#"[data-testid="cancel-button"]"#, || Ok(!plan_shown(id)?))?;
    click_until(id, &select, || has_property(id, &select, "checked", &Value::Bool(false)))
}

/// An orphan tree: a helper with two children whose launching shell exits.
/// Waits until the engine lists it; returns the tree (status JSON) and its pids.
fn make_orphan_tree(id: &str, helper: &Path) -> Result<(Value, Vec<u32>)> {
    let mut orphan = Command::new("sh")
        .args([
            "-c",
            &format!("{} --stay --exec 'spawn 2' </dev/null >/dev/null 2>&1 &", quote(helper)),
        ])
        .process_group(0)
        .spawn()?;
    orphan.wait()?;
    let tree = wait_until_value(Duration::from_secs(40), "the orphan tree to be listed", || {
        let status = invoke(id, "get_status", &json!({}))?;
        Ok(status["orphans"].as_array().and_then(|o| {
            o.iter()
                .find(|t| t["label"].as_str().is_some_and(|l| l.contains("--exec spawn 2")))
                .cloned()
        }))
    })?;
    let members: Vec<u32> = tree["members"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|m| m["pid"].as_u64())
                .filter_map(|p| u32::try_from(p).ok())
                .collect()
        })
        .unwrap_or_default();
    eprintln!("e2e: orphan tree {} with {} processes", tree["root"]["pid"], members.len());
    Ok((tree, members))
}

/// issue 12: the row's Restart button (shown on hover and focus) covered the
/// RSS figure. Their boxes must not meet, whether or not the button shows.
fn restart_clear_of_rss(id: &str, row: &str) -> Result<()> {
    let script = format!(
        "const row = document.querySelector('{row}'); \
         const b = row && row.querySelector('[data-testid=\"row-restart-button\"]'); \
         const r = row && row.querySelector('.rss'); \
         if (!b || !r) return 'missing'; \
         const x = b.getBoundingClientRect(), y = r.getBoundingClientRect(); \
         const meet = x.left < y.right && y.left < x.right && x.top < y.bottom && y.top < x.bottom; \
         return meet ? `overlap: button ${{JSON.stringify(x)}} rss ${{JSON.stringify(y)}}` : 'clear'"
    );
    let reply = request(
        "POST",
        &format!("/session/{id}/execute/sync"),
        &json!({ "script": script, "args": [] }),
    )?;
    match reply["value"].as_str() {
        Some("clear") => {
            eprintln!("e2e: the row's Restart button stays clear of the RSS figure");
            Ok(())
        }
        other => bail!("the row's Restart button and RSS figure: {other:?}"),
    }
}

/// The text the popover shows (names and argv are rendered as text by the UI).
fn page_text(id: &str) -> Result<String> {
    let reply = request(
        "POST",
        &format!("/session/{id}/execute/sync"),
        &json!({ "script": "return document.body ? document.body.innerText : ''", "args": [] }),
    )?;
    Ok(reply["value"].as_str().unwrap_or_default().to_owned())
}

fn checks(id: &str, root: &Path, helper: &Path, pidfile: &Path, first_pid: u32) -> Result<()> {
    // What the window shows (a blank page here means the UI failed to start).
    std::thread::sleep(Duration::from_secs(4));
    let page = request(
        "POST",
        &format!("/session/{id}/execute/sync"),
        &json!({ "script": "return [location.href, document.readyState, typeof window.__TAURI_INTERNALS__, document.body ? document.body.innerText.slice(0, 400) : null]", "args": [] }),
    )?;
    eprintln!("e2e: page: {}", page["value"]);
    // 1. The leak, counted and rising.
    let mut first = None;
    let status = wait_until_value(Duration::from_secs(40), "the leak to show a slope", || {
        let status = invoke(id, "get_status", &json!({}))?;
        let target = find_target(&status, "leaky");
        let epolls = target.and_then(|t| t["sample"]["kinds"]["epoll"].as_u64()).unwrap_or(0);
        let slope = target.and_then(|t| t["slope_per_hour"].as_f64()).unwrap_or(0.0);
        let rising = first.is_some_and(|f| epolls > f);
        first.get_or_insert(epolls);
        Ok((epolls > 0 && rising && slope > 0.0).then_some(status))
    })?;
    let target = find_target(&status, "leaky").cloned().unwrap_or_default();
    eprintln!(
        "e2e: leaky pid {} holds {} epolls, slope {:.0}/h",
        target["process"]["pid"],
        target["sample"]["kinds"]["epoll"],
        target["slope_per_hour"].as_f64().unwrap_or(0.0)
    );
    if target["process"]["pid"].as_u64() != Some(u64::from(first_pid)) {
        bail!("the status shows pid {} for leaky, not {first_pid}", target["process"]["pid"]);
    }
    // The popover shows it: the target, its count against the limit, a slope.
    let limit = target["sample"]["limit"].as_u64().unwrap_or(0);
    wait_until(Duration::from_secs(20), "the popover to show the leak", || {
        let text = page_text(id)?;
        Ok(text.contains("leaky")
            && text.contains(&first_pid.to_string())
            && text.contains(&format!("/{}", grouped(limit)))
            && (text.contains("/h") || text.contains("/min")))
    })
    .with_context(|| format!("the popover shows: {}", page_text(id).unwrap_or_default()))?;
    // About an hour to its limit: the row's colour agrees with the text once the
    // eta rule's samples are in.
    let row = r#"[data-testid="target-row"][data-target="leaky"]"#;
    wait_until(Duration::from_secs(60), "the row `leaky` to stop showing ok", || {
        Ok(has_attribute(id, row, "data-state", "warning")?
            || has_attribute(id, row, "data-state", "critical")?)
    })
    .with_context(|| format!("the popover shows: {}", page_text(id).unwrap_or_default()))?;
    screenshot(id, &root.join("docs/popover-light.png"))?;
    rows_by_urgency(id, "light")?;
    restart_clear_of_rss(id, row)?;
    axe_check(id, root, "the main view, light")?;

    // 2. Restart, from the row's button: the confirmation names the process, the
    // grace and the strategy; confirming gives the target a new process.
    let summary = format!(r#"{row} [data-testid="target-summary"]"#);
    click_until(id, &summary, || expanded(id, &summary, true))?;
    axe_check(id, root, "a detail view, light")?;
    click_until(id, &format!(r#"{row} [data-testid="restart-button"]"#), || plan_shown(id))?;
    cancel_focused(id, "the restart dialog")?;
    axe_check(id, root, "the restart dialog, light")?;
    let plan = plan_text(id)?;
    eprintln!("e2e: restart plan:\n{plan}");
    for expected in [&format!("{first_pid} (lw-helper)"), "wait up to 1s", "then start: sh -c"] {
        if !plan.contains(expected) {
            bail!("the restart confirmation does not say `{expected}`: {plan}");
        }
    }
    click_until(id, r#"[data-testid="confirm-button"]"#, || confirmed(id))?;
    let new_pid = wait_until_value(Duration::from_secs(30), "the restart", || {
        Ok(read_pid(pidfile).ok().filter(|pid| *pid != first_pid && !alive(first_pid)))
    })?;
    let pid_shown = format!(r#"{row} [data-testid="target-pid"]"#);
    wait_until(Duration::from_secs(20), "the popover to show the new pid", || {
        Ok(element_text(id, &pid_shown)? == new_pid.to_string())
    })
    .with_context(|| format!("the popover shows: {}", page_text(id).unwrap_or_default()))?;
    // Collapse the row again, so the orphans' screenshot shows the list.
    click_until(id, &summary, || expanded(id, &summary, false))?;
    eprintln!("e2e: restarted: pid {first_pid} → {new_pid}");

    // 3. An orphan tree: a helper with two children whose launching shell exits.
    let (tree, members) = make_orphan_tree(id, helper)?;
    let root_pid = tree["root"]["pid"].as_u64().unwrap_or(0);
    let orphan_row = format!(r#"[data-testid="orphan-row"][data-root-pid="{root_pid}"]"#);
    wait_until(Duration::from_secs(20), "the popover to list the orphan tree", || {
        Ok(!elements(id, &orphan_row)?.is_empty())
    })?;
    // Its root becomes a watched target (`worker`, by pidfile): the tree is
    // flagged "contains worker" and select-all leaves it out.
    let worker_pidfile = pidfile.with_file_name("worker.pid");
    std::fs::write(&worker_pidfile, format!("{root_pid}\n"))?;
    let config = pidfile.with_file_name("config.toml");
    let mut text = std::fs::read_to_string(&config)?;
    text.push_str(&format!(
        "\n[[watch]]\nname = \"worker\"\npidfile = {:?}\n",
        worker_pidfile.display().to_string()
    ));
    std::fs::write(&config, text)?;
    wait_until(
        Duration::from_secs(40),
        "the orphan tree to be flagged as holding `worker`",
        || {
            Ok(has_attribute(id, &orphan_row, "data-watched", "worker")?
                && element_text(
                    id,
                    &format!(r#"{orphan_row} [data-testid="orphan-holds-watched"]"#),
                )?
                .contains("contains worker"))
        },
    )
    .with_context(|| format!("the popover shows: {}", page_text(id).unwrap_or_default()))?;
    let select = format!(r#"{orphan_row} [data-testid="orphan-select"]"#);
    let all = r#"[data-testid="orphans-select-all"]"#;
    if elements(id, all).is_ok_and(|e| !e.is_empty())
        && has_property(id, all, "disabled", &Value::Bool(false))?
    {
        click_until(id, all, || has_property(id, all, "checked", &Value::Bool(true)))?;
        if has_property(id, &select, "checked", &Value::Bool(true))? {
            bail!("select-all chose the orphan tree that holds the watched target `worker`");
        }
        click_until(id, all, || has_property(id, all, "checked", &Value::Bool(false)))?;
    }
    eprintln!("e2e: the tree holding `worker` is flagged and left out of select-all");
    rows_by_urgency(id, "with a watched orphan")?;
    screenshot(id, &root.join("docs/popover-orphans.png"))?;
    if members.len() < 3 {
        bail!("the orphan tree should have 3 processes: {tree}");
    }
    // Select it by hand, Clean up, read the dry run, confirm.
    click_until(id, &select, || has_property(id, &select, "checked", &Value::Bool(true)))?;
    click_until(id, r#"[data-testid="cleanup-button"]"#, || plan_shown(id))?;
    cancel_focused(id, "the clean-up dialog")?;
    axe_check(id, root, "the clean-up dialog, light")?;
    let plan = plan_text(id)?;
    eprintln!("e2e: clean-up plan:\n{plan}");
    let named = members.iter().all(|pid| plan.contains(&pid.to_string()));
    if !named || !plan.contains("SIGTERM") {
        bail!("the clean-up confirmation does not list the tree {members:?}: {plan}");
    }
    click_until(id, r#"[data-testid="confirm-button"]"#, || confirmed(id))?;
    wait_until(Duration::from_secs(20), "the orphan tree to be gone", || {
        Ok(members.iter().all(|pid| !alive(*pid)))
    })
    .with_context(|| format!("the popover shows: {}", page_text(id).unwrap_or_default()))?;
    wait_until(Duration::from_secs(40), "the popover to drop the orphan tree", || {
        Ok(elements(id, &orphan_row)?.is_empty())
    })?;
    eprintln!("e2e: orphan tree cleaned up");
    click_until(id, r#"[data-testid="settings-button"]"#, || {
        Ok(!elements(id, r#"[data-testid="settings-button"][aria-pressed="true"]"#)?.is_empty())
    })?;
    axe_check(id, root, "Settings, light")?;
    click_until(id, r#"[data-testid="settings-button"]"#, || {
        Ok(!elements(id, r#"[data-testid="settings-button"][aria-pressed="false"]"#)?.is_empty())
    })?;
    // The restarted leaky's series has a slope again (its window spans the
    // fit's minimum) before the app restarts: what the restarted app must
    // show within two ticks, seeded from the history (see `seeded_slope`).
    wait_until(Duration::from_secs(120), "leaky's new series to have a slope", || {
        let status = invoke(id, "get_status", &json!({}))?;
        Ok(find_target(&status, "leaky").is_some_and(|t| {
            t["reading"] == "measured" && t["slope_per_hour"].as_f64().is_some_and(|s| s > 0.0)
        }))
    })?;
    Ok(())
}

/// `n` as the popover writes counts: thousands apart by U+202F from 10 000 on.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    if n < 10_000 {
        return digits;
    }
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('\u{202f}');
        }
        out.push(c);
    }
    out
}

/// The text of the open dialog's plan: a detail under its plain summary (in a
/// closed `<details>`, so read as `textContent`, not as rendered text).
fn plan_text(id: &str) -> Result<String> {
    wait_until_value(Duration::from_secs(20), "the plan's text", || {
        let eid = element(id, r#"[data-testid="plan-text"]"#)?;
        Ok(property(id, &eid, "textContent")?.as_str().filter(|t| !t.is_empty()).map(str::to_owned))
    })
}

/// A destructive dialog opens with Cancel focused: one stray Return stops nothing.
fn cancel_focused(id: &str, what: &str) -> Result<()> {
    wait_until(Duration::from_secs(10), &format!("{what} to focus Cancel"), || {
        let reply = request(
            "POST",
            &format!("/session/{id}/execute/sync"),
            &json!({ "script": "const a = document.activeElement; return a && a.dataset ? a.dataset.testid || a.tagName : null", "args": [] }),
        )?;
        Ok(reply["value"].as_str() == Some("cancel-button"))
    })
    .with_context(|| format!("{what} did not open with Cancel focused"))?;
    eprintln!("e2e: {what} opens with Cancel focused");
    Ok(())
}

/// The rows come by urgency: the status's order is the severity order (then
/// the nearest limit), and the popover draws them in that order.
fn rows_by_urgency(id: &str, when: &str) -> Result<()> {
    let status = invoke(id, "get_status", &json!({}))?;
    let rank = |s: &str| match s {
        "critical" => 2,
        "warning" => 1,
        _ => 0,
    };
    let targets = status["targets"].as_array().cloned().unwrap_or_default();
    let severities: Vec<i32> =
        targets.iter().map(|t| rank(t["severity"].as_str().unwrap_or_default())).collect();
    if severities.windows(2).any(|w| w[0] < w[1]) {
        bail!("rows not by urgency ({when}): {severities:?} in {status}");
    }
    let names: Vec<&str> = targets.iter().filter_map(|t| t["name"].as_str()).collect();
    let script = "return [...document.querySelectorAll('[data-testid=\"target-row\"]')].map(r => r.dataset.target)";
    let reply = request(
        "POST",
        &format!("/session/{id}/execute/sync"),
        &json!({ "script": script, "args": [] }),
    )?;
    let drawn: Vec<&str> = reply["value"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if drawn != names {
        bail!("the popover draws {drawn:?}, the engine orders {names:?} ({when})");
    }
    eprintln!("e2e: rows by urgency ({when}): {names:?}");
    Ok(())
}

/// Runs axe-core (ui/node_modules/axe-core, a devDependency) inside the real
/// webview and fails on any serious or critical WCAG 2 A/AA violation.
fn axe_check(id: &str, root: &Path, view: &str) -> Result<()> {
    let source = std::fs::read_to_string(root.join("ui/node_modules/axe-core/axe.min.js"))
        .context("axe-core is not installed: run `npm ci` in ui/")?;
    // The library travels as part of the script (a page's CSP forbids eval).
    let script = format!(
        "{source}\n;const done = arguments[arguments.length - 1];\n\
         window.axe.run(document, {{ runOnly: {{ type: 'tag', values: ['wcag2a', 'wcag2aa', \
         'wcag21a', 'wcag21aa'] }}, resultTypes: ['violations'] }})\n\
         .then(r => done(r.violations.filter(v => v.impact === 'serious' || v.impact === \
         'critical').map(v => ({{ id: v.id, impact: v.impact, help: v.help, nodes: \
         v.nodes.slice(0, 6).map(n => n.target.join(' ') + ' :: ' + (n.failureSummary || '')\
         .replace(/\\s+/g, ' ').slice(0, 240)) }}))), e => done({{ error: String(e) }}));"
    );
    let reply = request(
        "POST",
        &format!("/session/{id}/execute/async"),
        &json!({ "script": script, "args": [] }),
    )?;
    let value = &reply["value"];
    if let Some(error) = value.get("error") {
        bail!("axe-core could not run on {view}: {error}");
    }
    let violations = value.as_array().cloned().unwrap_or_default();
    if !violations.is_empty() {
        bail!(
            "axe-core: {} serious or critical violations on {view}:\n{}",
            violations.len(),
            serde_json::to_string_pretty(&violations).unwrap_or_default()
        );
    }
    eprintln!("e2e: axe-core: no serious or critical violation on {view}");
    Ok(())
}

fn config_text(helper: &Path, pidfile: &Path) -> String {
    let start = start_leaky(helper, pidfile);
    format!(
        r#"[defaults]
interval = "1s"
window = "2m"

[[watch]]
name = "leaky"
pidfile = {pidfile:?}

[watch.restart]
command = ["sh", "-c", {start:?}]
health_timeout = "10s"
grace = "1s"

[orphans]
match = ["lw-helper --stay --exec spawn 2$"]
"#,
        pidfile = pidfile.display().to_string(),
    )
}

/// A shell line that writes its pid to `pidfile` and becomes the leaking helper.
fn start_leaky(helper: &Path, pidfile: &Path) -> String {
    format!(
        "echo $$ > {}; exec {} --stay --exec 'leak epoll 200' </dev/null >/dev/null",
        quote(pidfile),
        quote(helper)
    )
}

fn quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

fn read_pid(pidfile: &Path) -> Result<u32> {
    Ok(std::fs::read_to_string(pidfile)?.trim().parse()?)
}

fn wait_for_pid(pidfile: &Path) -> Result<u32> {
    wait_until_value(Duration::from_secs(10), "the helper's pidfile", || Ok(read_pid(pidfile).ok()))
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z'))
    })
}

fn find_target<'a>(status: &'a Value, name: &str) -> Option<&'a Value> {
    status["targets"].as_array()?.iter().find(|t| t["name"] == name)
}

/// The WebDriver reference of an element in a reply.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The elements matching a CSS selector now (none is not an error).
fn elements(id: &str, css: &str) -> Result<Vec<String>> {
    let reply = request(
        "POST",
        &format!("/session/{id}/elements"),
        &json!({ "using": "css selector", "value": css }),
    )?;
    Ok(reply["value"]
        .as_array()
        .map(|found| {
            found.iter().filter_map(|e| e[ELEMENT_KEY].as_str().map(str::to_owned)).collect()
        })
        .unwrap_or_default())
}

/// The first element matching a CSS selector, waiting for the UI to render it.
fn element(id: &str, css: &str) -> Result<String> {
    wait_until_value(Duration::from_secs(20), css, || Ok(elements(id, css)?.into_iter().next()))
}

/// Clicks the element matching `css` as a user would (WebDriver scrolls it into
/// view and refuses a disabled or covered one) until `done` holds. A click is
/// retried while the element is missing, disabled or the driver fails, and never
/// repeated once `done` holds: a retried toggle must not undo itself.
fn click_until(id: &str, css: &str, mut done: impl FnMut() -> Result<bool>) -> Result<()> {
    wait_until(Duration::from_secs(20), &format!("a click on {css} to take effect"), || {
        if done()? {
            return Ok(true);
        }
        let Some(eid) = elements(id, css)?.into_iter().next() else { return Ok(false) };
        if property(id, &eid, "disabled")? != Value::Bool(true) {
            request("POST", &format!("/session/{id}/element/{eid}/click"), &json!({}))?;
            std::thread::sleep(Duration::from_millis(300));
        }
        done()
    })
}

/// A DOM property of an element (`disabled`, `checked`...).
fn property(id: &str, eid: &str, name: &str) -> Result<Value> {
    Ok(request("GET", &format!("/session/{id}/element/{eid}/property/{name}"), &Value::Null)?
        ["value"]
        .take())
}

/// Whether the first element matching `css` has this property value.
fn has_property(id: &str, css: &str, name: &str, value: &Value) -> Result<bool> {
    Ok(match elements(id, css)?.first() {
        Some(eid) => property(id, eid, name)? == *value,
        None => false,
    })
}

/// Whether the first element matching `css` has this attribute value.
fn has_attribute(id: &str, css: &str, name: &str, value: &str) -> Result<bool> {
    let Some(eid) = elements(id, css)?.into_iter().next() else { return Ok(false) };
    let path = format!("/session/{id}/element/{eid}/attribute/{name}");
    Ok(request("GET", &path, &Value::Null)?["value"] == Value::String(value.to_owned()))
}

/// Whether the disclosure matching `css` is open (`on`) or closed.
fn expanded(id: &str, css: &str, on: bool) -> Result<bool> {
    let eid = element(id, css)?;
    let path = format!("/session/{id}/element/{eid}/attribute/aria-expanded");
    Ok(request("GET", &path, &Value::Null)?["value"] == Value::String(on.to_string()))
}

/// Whether the confirmation dialog is closed or busy (its button disabled).
fn confirmed(id: &str) -> Result<bool> {
    let css = r#"[data-testid="confirm-button"]"#;
    Ok(elements(id, css)?.is_empty() || has_property(id, css, "disabled", &Value::Bool(true))?)
}

/// Whether the confirmation dialog shows a plan.
fn plan_shown(id: &str) -> Result<bool> {
    Ok(!elements(id, r#"[data-testid="plan-text"]"#)?.is_empty())
}

/// The rendered text of the element matching `css`, once it has some.
fn element_text(id: &str, css: &str) -> Result<String> {
    wait_until_value(Duration::from_secs(20), &format!("text in {css}"), || {
        let eid = element(id, css)?;
        let reply = request("GET", &format!("/session/{id}/element/{eid}/text"), &Value::Null)?;
        Ok(reply["value"].as_str().filter(|t| !t.is_empty()).map(str::to_owned))
    })
}

/// Calls a command through the app's IPC inside the webview, as the UI does
/// (read-only status checks only: actions go through the buttons).
fn invoke(id: &str, cmd: &str, args: &Value) -> Result<Value> {
    let script = "const [cmd, args, done] = arguments; \
        window.__TAURI_INTERNALS__.invoke(cmd, args) \
          .then(value => done({ ok: value }), error => done({ err: error }));";
    let reply = request(
        "POST",
        &format!("/session/{id}/execute/async"),
        &json!({ "script": script, "args": [cmd, args] }),
    )?;
    let value = &reply["value"];
    if let Some(err) = value.get("err") {
        bail!("{cmd} failed: {err}");
    }
    value.get("ok").cloned().ok_or_else(|| anyhow!("{cmd}: unexpected WebDriver reply {reply}"))
}

fn screenshot(id: &str, path: &Path) -> Result<()> {
    let reply = request("GET", &format!("/session/{id}/screenshot"), &Value::Null)?;
    let data = reply["value"].as_str().ok_or_else(|| anyhow!("no screenshot: {reply}"))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, base64_decode(data)?)?;
    eprintln!("e2e: saved {}", path.display());
    Ok(())
}

/// How many times a request whose reply never came is sent again. tauri-driver
/// sometimes fails to forward a request to WebKitWebDriver ("client error
/// (SendRequest)", seen on a loaded machine) and closes the connection without a
/// reply; the command was not delivered, so sending it again is safe.
const UNANSWERED_RETRIES: u32 = 3;

/// One WebDriver request: HTTP/1.1 with a JSON body, `Connection: close`.
fn request(method: &str, path: &str, body: &Value) -> Result<Value> {
    let body = if body.is_null() { String::new() } else { body.to_string() };
    let mut attempt = 0;
    let response = loop {
        match exchange(method, path, &body) {
            Ok(response) if !response.is_empty() => break response,
            outcome if attempt < UNANSWERED_RETRIES => {
                attempt += 1;
                let why = outcome.err().map_or_else(|| "no reply".to_owned(), |e| e.to_string());
                eprintln!("e2e: {method} {path}: {why}; sending it again ({attempt})");
                std::thread::sleep(Duration::from_millis(500));
            }
            Ok(_) => bail!("{method} {path}: no reply from tauri-driver"),
            Err(e) => return Err(e.context(format!("{method} {path}"))),
        }
    };
    let text = String::from_utf8_lossy(&response);
    let (head, payload) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("{method} {path}: bad HTTP reply: {text}"))?;
    let payload = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(payload)
    } else {
        payload.to_owned()
    };
    let value: Value = serde_json::from_str(&payload)
        .with_context(|| format!("{method} {path}: not JSON: {payload}"))?;
    if value["value"].get("error").is_some() {
        bail!("{method} {path}: {}", value["value"]);
    }
    Ok(value)
}

/// One request on a fresh connection; the raw reply (empty when the driver
/// closed the connection without one).
fn exchange(method: &str, path: &str, body: &str) -> Result<Vec<u8>> {
    let port = driver_port();
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    Ok(response)
}

fn dechunk(mut text: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = text.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        text = rest[size..].trim_start_matches("\r\n");
    }
    out
}

fn base64_decode(text: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut buf, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => bail!("bad base64"),
        };
        buf = (buf << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((buf >> bits) & 0xff) as u8);
        }
    }
    Ok(out)
}

fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> Result<bool>) -> Result<()> {
    wait_until_value(timeout, what, || Ok(f()?.then_some(())))
}

fn wait_until_value<T>(
    timeout: Duration,
    what: &str,
    mut f: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let started = Instant::now();
    let mut last_error = None;
    while started.elapsed() < timeout {
        match f() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    match last_error {
        Some(e) => Err(e.context(format!("timed out waiting for {what}"))),
        None => bail!("timed out after {timeout:?} waiting for {what}"),
    }
}

/// `tauri-driver`, installed into `target/tools` at the pinned version.
fn tauri_driver(root: &Path) -> Result<PathBuf> {
    let tools = root.join("target/tools");
    let bin = tools.join("bin/tauri-driver");
    if !bin.is_file() {
        run(cargo()
            .env_remove("CARGO_TARGET_DIR")
            .args([
                "install",
                "tauri-driver",
                "--version",
                TAURI_DRIVER_VERSION,
                "--locked",
                "--root",
            ])
            .arg(&tools))?;
    }
    Ok(bin)
}
