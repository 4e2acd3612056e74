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

/// One element's opening tag's attributes (entities decoded) and its markup up to the next
/// element of the same tag.
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

/// Every `<tag ...>` in `dom` carrying `marker` in its opening tag.
pub(crate) fn elements(dom: &str, tag: &str, marker: &str) -> Vec<Element> {
    let open = format!("<{tag} ");
    let mut found = Vec::new();
    let starts: Vec<usize> = dom.match_indices(&open).map(|(at, _)| at).collect();
    for (index, &start) in starts.iter().enumerate() {
        let end_of_tag = start + tag_end(&dom[start..]);
        let tag_text = &dom[start + open.len()..end_of_tag];
        if !tag_text.contains(marker) {
            continue;
        }
        let end = starts.get(index + 1).copied().unwrap_or(dom.len());
        found.push(Element {
            attributes: attributes(tag_text),
            markup: dom[start..end].to_owned(),
        });
    }
    found
}

/// Where the opening tag at the start of `markup` ends: its first `>` outside quotes.
pub(crate) fn tag_end(markup: &str) -> usize {
    let mut quoted = false;
    for (at, byte) in markup.bytes().enumerate() {
        match byte {
            b'"' => quoted = !quoted,
            b'>' if !quoted => return at,
            _ => {}
        }
    }
    panic!("unterminated tag: {markup}")
}

pub(crate) fn attributes(tag_text: &str) -> HashMap<String, String> {
    let mut found = HashMap::new();
    let mut rest = tag_text;
    while let Some(equals) = rest.find("=\"") {
        let name = rest[..equals].trim().rsplit(' ').next().unwrap().to_owned();
        let value_start = equals + 2;
        let value_len = rest[value_start..].find('"').unwrap();
        found.insert(name, decode(&rest[value_start..value_start + value_len]));
        rest = &rest[value_start + value_len + 1..];
    }
    found
}

pub(crate) fn decode(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The text of the first element of `markup` whose opening tag carries `marker`.
pub(crate) fn text_of(markup: &str, marker: &str) -> String {
    let at = markup
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in {markup}"));
    let start = at + tag_end(&markup[at..]) + 1;
    let end = start + markup[start..].find('<').unwrap();
    decode(&markup[start..end])
}
