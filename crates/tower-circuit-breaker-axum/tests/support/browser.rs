//! Headless Chromium for the tests, and a reader for the DOM it dumps.
//!
//! Chromium must be installed (`apt-get install chromium` on Debian; CI installs it): a test
//! that needs it fails, not skips, without it. `CHROMIUM=/path/to/chrome` picks another binary.

#![allow(dead_code)] // each test binary uses a part of it

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long one Chromium run may take, cold start on a busy machine included.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(90);

// ===== Chromium =====

/// The build's target directory (the test binary runs from `<target>/<profile>/deps/`).
pub(crate) fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.ancestors()
        .nth(3)
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
}

pub(crate) struct Browser {
    dom: String,
    status: ExitStatus,
    stderr: String,
}

/// Runs headless Chromium on `url` until the page has had 5 s of (virtual) time, and returns
/// the DOM as it stands then; with `screenshot`, also writes a 1280x900 PNG there.
pub(crate) async fn chromium(url: String, profile: &str, screenshot: Option<PathBuf>) -> Browser {
    let profile = target_dir().join("dashboard-test").join(profile);
    tokio::task::spawn_blocking(move || {
        let binary = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".to_owned());
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).unwrap();
        let mut command = Command::new(&binary);
        command
            .arg("--headless")
            // Root in a container has no user namespace for the sandbox; the page is our own.
            .arg("--no-sandbox")
            .arg("--disable-gpu")
            .arg("--no-first-run")
            .arg("--no-default-browser-check")
            .arg("--disable-extensions")
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("--virtual-time-budget=5000")
            .arg("--window-size=1280,900");
        if let Some(path) = &screenshot {
            command.arg(format!("--screenshot={}", path.display()));
        }
        command
            .arg("--dump-dom")
            .arg(&url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => panic!(
                "`{binary}` is not installed: the dashboard is checked in a real headless \
                 Chromium (Debian: `apt-get install -y chromium`; or set CHROMIUM to a \
                 Chrome/Chromium binary)"
            ),
            Err(error) => panic!("cannot start `{binary}`: {error}"),
        };
        let mut stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let out = std::thread::spawn(move || {
            let mut text = String::new();
            stdout.read_to_string(&mut text).map(|_| text)
        });
        let err = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let deadline = Instant::now() + CHROMIUM_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "chromium did not finish within {CHROMIUM_TIMEOUT:?} on {url}; stderr:\n{}",
                    err.join().unwrap()
                );
            }
            // Waiting on a process, not on a breaker.
            std::thread::sleep(Duration::from_millis(20));
        };
        let dom = out.join().unwrap().expect("chromium's DOM is UTF-8");
        let stderr = err.join().unwrap();
        let _ = std::fs::remove_dir_all(&profile);
        Browser {
            dom,
            status,
            stderr,
        }
    })
    .await
    .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))
}

impl Browser {
    /// The DOM, after checking Chromium ended well (its dbus and GPU chatter on stderr aside).
    pub(crate) fn dom(&self) -> &str {
        assert!(
            self.status.success(),
            "chromium failed ({}); stderr:\n{}",
            self.status,
            self.stderr
        );
        assert!(
            self.dom.contains("</html>"),
            "chromium dumped no document; stderr:\n{}",
            self.stderr
        );
        &self.dom
    }
}

// ===== reading the DOM =====

/// One element: its attributes and its outer HTML (as the HTML parser serializes it).
#[derive(Debug)]
pub(crate) struct Element {
    pub(crate) attributes: HashMap<String, String>,
    pub(crate) markup: String,
}

impl Element {
    pub(crate) fn attribute(&self, name: &str) -> &str {
        self.attributes
            .get(name)
            .map_or_else(|| panic!("no {name} on {self:?}"), String::as_str)
    }
}

/// A CSS attribute selector from a marker written as in the markup: `data-breaker=` (the
/// attribute is there) or `id="status"` (it has that value).
fn attribute_selector(marker: &str) -> String {
    match marker.split_once('=') {
        Some((name, "")) => format!("[{name}]"),
        Some((name, value)) => format!("[{name}={value}]"),
        None => format!("[{marker}]"),
    }
}

fn selector(css: &str) -> scraper::Selector {
    scraper::Selector::parse(css).unwrap_or_else(|err| panic!("bad selector {css}: {err}"))
}

/// Every `<tag>` in `dom` whose opening tag carries `marker`, in document order.
pub(crate) fn elements(dom: &str, tag: &str, marker: &str) -> Vec<Element> {
    let document = scraper::Html::parse_document(dom);
    let found = document
        .select(&selector(&format!("{tag}{}", attribute_selector(marker))))
        .map(|element| Element {
            attributes: element
                .value()
                .attrs()
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect(),
            markup: element.html(),
        })
        .collect();
    found
}

/// The text of the first element of `markup` whose opening tag carries `marker`.
pub(crate) fn text_of(markup: &str, marker: &str) -> String {
    let fragment = scraper::Html::parse_fragment(markup);
    let element = fragment
        .select(&selector(&attribute_selector(marker)))
        .next()
        .unwrap_or_else(|| panic!("no {marker} in {markup}"));
    element.text().collect::<String>().trim().to_owned()
}
