//! What a breaker's shared state looks like in Redis: the keys, the JSON record under a key and
//! on the channel, and the two Lua scripts that write and read them.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tower_circuit_breaker::store::{BreakerId, SharedState};
use tower_circuit_breaker::CircuitState;

/// Writes a breaker's state and tells every instance, in one step on the server (a script runs
/// alone, so the version it gives is the order every instance hears the updates in).
///
/// The version is the server's clock in milliseconds times 1024, or one more than the last
/// version given if that is higher (and a whole number less than 2^30 ahead of the clock's: a
/// value that is not is someone else's, and ignored): it keeps growing across a server restart
/// that lost the data (the clock has moved on) and never repeats within a millisecond. It is kept
/// under its own key, with no expiry, written as a decimal string (Lua numbers are doubles; these
/// stay below 2^53, and every number sent to Redis is formatted as a whole number).
///
/// KEYS: the breaker's key, the version key. ARGV: the channel, the record as JSON (without the
/// fields the script adds), the break in milliseconds (empty unless open), and how long the key
/// of a state that is not open lives, in milliseconds (empty: until the next update).
pub(crate) const PUBLISH: &str = r"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local version = now * 1024
local last = redis.pcall('GET', KEYS[2])
if type(last) == 'string' then
  local given = tonumber(last)
  if given and given == math.floor(given) and given >= version and given < version + 1073741824 then
    version = given + 1
  end
end
local v = string.format('%.0f', version)
redis.call('SET', KEYS[2], v)
local record = cjson.decode(ARGV[2])
record.version = v
record.now_ms = string.format('%.0f', now)
local open_for = tonumber(ARGV[3])
if open_for then record.until_ms = string.format('%.0f', now + open_for) end
local text = cjson.encode(record)
local lives = open_for or tonumber(ARGV[4])
if lives then
  redis.call('SET', KEYS[1], text, 'PX', string.format('%.0f', math.max(1, lives)))
else
  redis.call('SET', KEYS[1], text)
end
redis.call('PUBLISH', ARGV[1], text)
return v
";

/// Reads breakers' keys with the server's time, so a break's end is counted on one clock. A key
/// holding another type comes back as `!` and the server's error; a missing key as empty.
pub(crate) const READ: &str = r"
local clock = redis.call('TIME')
local out = { string.format('%.0f', tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)) }
for i, key in ipairs(KEYS) do
  local value = redis.pcall('GET', key)
  if type(value) == 'string' then
    out[i + 1] = value
  elseif type(value) == 'table' and value.err then
    out[i + 1] = '!' .. value.err
  else
    out[i + 1] = ''
  end
end
return out
";

/// Where one registry's breakers live in Redis.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// `<prefix>breaker:<name>`, or `<prefix>keyed:<length of group>:<group>:<key>` (the
    /// length keeps a group with a `:` in its name from meeting another group's key).
    pub(crate) fn breaker(&self, id: &BreakerId) -> String {
        match &id.group {
            None => format!("{}breaker:{}", self.prefix, id.name),
            Some(group) => format!("{}keyed:{}:{group}:{}", self.prefix, group.len(), id.name),
        }
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The key of the last version given.
    pub(crate) fn version(&self) -> String {
        format!("{}version", self.prefix)
    }

    /// The channel every update is published on.
    pub(crate) fn channel(&self) -> String {
        format!("{}updates", self.prefix)
    }
}

/// What an instance sends to the publish script.
#[derive(Debug, Serialize)]
pub(crate) struct Outgoing<'a> {
    breaker: &'a str,
    group: Option<&'a str>,
    state: CircuitState,
    generation: u64,
    origin: &'a str,
    sequence: u64,
    reason: &'a str,
}

impl<'a> Outgoing<'a> {
    pub(crate) fn of(update: &'a SharedState) -> Self {
        Self {
            breaker: &update.breaker.name,
            group: update.breaker.group.as_deref(),
            state: update.state,
            generation: update.generation,
            origin: &update.origin,
            sequence: update.sequence,
            reason: &update.reason,
        }
    }
}

/// What the script stores and publishes: the instance's record and the fields it adds. Fields it
/// does not know are ignored (a newer instance's, during a rolling upgrade).
#[derive(Debug, Deserialize)]
struct Record {
    breaker: String,
    #[serde(default)]
    group: Option<String>,
    state: CircuitState,
    generation: u64,
    origin: String,
    sequence: u64,
    reason: String,
    version: String,
    now_ms: String,
    #[serde(default)]
    until_ms: Option<String>,
}

/// Why a value is not a breaker's state.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Invalid {
    #[error("not a breaker's state: {0}")]
    Json(#[from] serde_json::Error),
    #[error("not a breaker's state: `{field}` is not a whole number")]
    Number { field: &'static str },
    #[error("a half-open state is never published")]
    HalfOpen,
    #[error("an open state without the end of its break")]
    NoEnd,
    #[error("the value is for breaker {found}, under the key of {expected}")]
    Elsewhere {
        found: BreakerId,
        expected: BreakerId,
    },
    #[error("its version {0} is more than a day ahead of this instance's clock")]
    Ahead(u64),
}

/// The longest break shared, in milliseconds (ten years): anything longer is shared as this, so
/// every figure stays a whole number Redis takes.
pub(crate) const MAX_OPEN_FOR_MS: u128 = 10 * 365 * 24 * 3_600_000;

/// The highest version this instance takes: a day ahead of its clock (versions are the server's
/// clock in milliseconds times 1024). Anything higher is not the store's, and taking it would make
/// the instance skip every real update of that breaker after it.
fn highest_version() -> u64 {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis());
    let highest = (now_ms + 86_400_000) * 1024;
    u64::try_from(highest).unwrap_or(u64::MAX)
}

fn number(text: &str, field: &'static str) -> Result<u64, Invalid> {
    text.parse().map_err(|_| Invalid::Number { field })
}

/// Reads a record: from the channel (`now_ms` = `None`: the break is counted from when the server
/// wrote it, a moment ago) or from a key read at the server's time `now_ms`.
pub(crate) fn parse(text: &[u8], now_ms: Option<u64>) -> Result<SharedState, Invalid> {
    let record: Record = serde_json::from_slice(text)?;
    let version = number(&record.version, "version")?;
    if version > highest_version() {
        return Err(Invalid::Ahead(version));
    }
    let written_ms = number(&record.now_ms, "now_ms")?;
    let open_for = match (record.state, &record.until_ms) {
        (CircuitState::HalfOpen, _) => return Err(Invalid::HalfOpen),
        (CircuitState::Open, None) => return Err(Invalid::NoEnd),
        (CircuitState::Open, Some(until)) => {
            let until = number(until, "until_ms")?;
            let from = now_ms.unwrap_or(written_ms);
            Some(Duration::from_millis(until.saturating_sub(from)))
        }
        _ => None,
    };
    Ok(SharedState {
        breaker: BreakerId {
            group: record.group.map(Arc::from),
            name: record.breaker.into(),
        },
        state: record.state,
        open_for,
        generation: record.generation,
        origin: record.origin.into(),
        sequence: record.sequence,
        version,
        reason: record.reason,
    })
}

/// Reads the value found under `expected`'s key.
pub(crate) fn parse_stored(
    text: &[u8],
    now_ms: u64,
    expected: &BreakerId,
) -> Result<SharedState, Invalid> {
    let state = parse(text, Some(now_ms))?;
    if state.breaker != *expected {
        return Err(Invalid::Elsewhere {
            found: state.breaker,
            expected: expected.clone(),
        });
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(group: Option<&str>, name: &str) -> BreakerId {
        BreakerId {
            group: group.map(Arc::from),
            name: name.into(),
        }
    }

    #[test]
    fn keys_of_keyed_breakers_never_meet() {
        let keys = Keys::new("app:");
        assert_eq!(keys.breaker(&id(None, "db")), "app:breaker:db");
        let a = keys.breaker(&id(Some("a:b"), "c"));
        let b = keys.breaker(&id(Some("a"), "b:c"));
        assert_ne!(a, b);
        assert_eq!(a, "app:keyed:3:a:b:c");
    }

    #[test]
    fn a_stored_open_state_is_joined_for_what_is_left_of_its_break() {
        let text = br#"{"breaker":"db","state":"open","generation":3,"origin":"a","sequence":1,
            "reason":"5 consecutive failures","version":"1839104000000000","now_ms":"1000",
            "until_ms":"31000"}"#;
        let state = parse_stored(text, 11_000, &id(None, "db")).unwrap();
        assert_eq!(state.open_for, Some(Duration::from_secs(20)));
        assert_eq!(state.version, 1_839_104_000_000_000);
        // Heard on the channel, the break runs from when it was written.
        let heard = parse(text, None).unwrap();
        assert_eq!(heard.open_for, Some(Duration::from_secs(30)));
    }

    #[test]
    fn garbage_is_refused_with_why() {
        let cases: [(&[u8], &str); 6] = [
            (
                br#"{"breaker":"db","state":"closed","generation":1,"origin":"a","sequence":1,"reason":"","version":"18446744073709551615","now_ms":"1"}"#,
                "its version 18446744073709551615 is more than a day ahead of this instance's clock",
            ),
            (b"not json", "not a breaker's state: expected ident at line 1 column 2"),
            (br#"{"breaker":"db"}"#, "not a breaker's state: missing field `state` at line 1 column 16"),
            (
                br#"{"breaker":"db","state":"open","generation":1,"origin":"a","sequence":1,"reason":"","version":"1","now_ms":"1"}"#,
                "an open state without the end of its break",
            ),
            (
                br#"{"breaker":"db","state":"closed","generation":1,"origin":"a","sequence":1,"reason":"","version":"x","now_ms":"1"}"#,
                "not a breaker's state: `version` is not a whole number",
            ),
            (
                br#"{"breaker":"other","state":"closed","generation":1,"origin":"a","sequence":1,"reason":"","version":"1","now_ms":"1"}"#,
                "the value is for breaker `other`, under the key of `db`",
            ),
        ];
        for (text, why) in cases {
            let error = parse_stored(text, 0, &id(None, "db")).unwrap_err();
            assert_eq!(error.to_string(), why);
        }
    }
}
