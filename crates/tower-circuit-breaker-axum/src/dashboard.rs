//! The breakers' live dashboard: one HTML page that watches `health` and shows every breaker.
//!
//! [`BreakerRoutes`](crate::BreakerRoutes) serves it at `GET /`. The page is one
//! self-contained file ([`HTML`]): its CSS and script are inline, and it loads nothing else (no
//! build step, no CDN, no web fonts, no images), so it works on a host with no way out to the
//! internet and under a strict content security policy that allows inline styles and scripts.
//!
//! # What it shows
//!
//! - A header with the app's overall status (`healthy` green, `degraded` amber, `unhealthy`
//!   red), the count of breakers by state with the breakers that are not closed named (a click
//!   scrolls to the card), and the time of the last update.
//! - One card per breaker, its header coloured by state (closed green, half-open amber, open
//!   red, isolated purple, disabled grey) and the state also written out, so colour is never the
//!   only sign. The card shows the name, a `critical` badge, the failure and slow-call rates as
//!   percentages with a bar (and whether they are over a window or every call), calls,
//!   successes, failures, rejections, consecutive failures and the break's length; while open,
//!   the time left in the break counting down; and the last three transitions, newest first, as
//!   `from → to`, the reason (`3 consecutive failures`) and how long ago.
//! - The breakers of each [keyed group](tower_circuit_breaker::keyed) (one per host, per
//!   tenant) in a section of their own after the named breakers, headed by the group's name,
//!   its health, its live keys of the most it holds, its breakers by state, and the calls
//!   that overflowed and the breakers evicted. Each of their cards also carries the group's
//!   name, and a chip in the page's header names a keyed breaker as `group / key`. A key
//!   written like a named breaker, or like a key of another group, is another card.
//! - When the registry shares its breakers' state through a [shared state
//!   store](tower_circuit_breaker::store), a line under the header with the store's kind, this
//!   instance's name in it, `connected` (green) or `disconnected` (amber, the status is then
//!   `degraded`), the updates published, received and applied (and the failed publishes and
//!   reads, dropped transitions and unreadable values, when there are any), and the last error
//!   while disconnected. Without a store there is no such line.
//! - A "connection lost" banner when `health` cannot be read (network error, timeout, a status
//!   other than 200 or 503); the last report stays on screen, dimmed.
//!
//! Cards are in name order, so a card does not move when its state changes; the header names
//! the breakers that need a look. A "problems first" order (open, isolated, half-open, disabled,
//! closed; critical first within a state) can be picked on the page, where the browser
//! remembers it, or linked to as `?sort=problems` (within each section). Names, keys, group
//! names, reasons, the store's instance name and errors are set as text (`textContent`,
//! attributes), never parsed as HTML: keys come from the network, and a key function can make
//! any string a key.
//!
//! # Where it looks for `health`
//!
//! The page polls `health` about once a second, resolved against its own path taken as a
//! directory: it assumes it is served at the root of the router whose `health` it reads.
//! Nested with `app.nest("/ops", routes)`, axum 0.8 serves the page at `/ops` (not at `/ops/`),
//! and the page polls `/ops/health`; it would poll the same URL if opened as `/ops/` (when an
//! app routes that too). Merged at the root, it is at `/` and polls `/health`. Served somewhere
//! else (say a handler of your own at `/dashboard` with health at `/health`), it would poll
//! `/dashboard/health`: serve it at the same level as `health`.
//!
//! `health` answers 503 with the same JSON body when the app is unhealthy; the page draws that
//! body like any other report. Ages (`12 s ago`) are measured against the report's own
//! `checked_at`, so a browser whose clock is off still shows them right.
//!
//! # Hooks for tests and scripts
//!
//! Each card carries `data-breaker="<name>"` and `data-state="<state>"` (`closed`, `open`,
//! `half_open`, `isolated`, `disabled`), and a keyed breaker's card `data-group="<group>"`;
//! each keyed group is a `section` with `data-group="<group>"` and `data-health`, its figures
//! in elements with `data-role` `live`, `by-state`, `overflowed` and `evictions`; the overall status is the element `#status` with
//! `data-status`; the connection banner is `#connection` with `data-connection` (`waiting`,
//! `ok` or `lost`); the store line is `#store` with `data-connected` (`true` or `false`; hidden
//! without a store), its parts in elements with `data-role` `store-kind`, `store-instance`,
//! `store-connection`, `store-counts` and `store-error`.
//!
//! # Example
//!
//! ```
//! use axum::{routing::get, Router};
//! use tower_circuit_breaker_axum::dashboard;
//!
//! // What `BreakerRoutes` does; shown for an app that serves its own `/health`.
//! let app: Router = Router::new().route("/", get(|| async { dashboard::page() }));
//! # let _ = app;
//! assert!(dashboard::HTML.starts_with("<!doctype html>"));
//! ```

use axum::response::Html;

/// The dashboard page, a complete HTML document with its CSS and script inline.
pub const HTML: &str = include_str!("dashboard.html");

/// The dashboard page as an axum response (`text/html; charset=utf-8`), for a `GET` handler.
pub fn page() -> Html<&'static str> {
    Html(HTML)
}
