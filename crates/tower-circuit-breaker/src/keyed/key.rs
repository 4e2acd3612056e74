use std::borrow::Cow;

/// How a [`KeyedCircuitBreakerLayer`](super::KeyedCircuitBreakerLayer) finds a request's key.
///
/// `None` sends the request to the group's no-key breaker. A closure `Fn(&Request) ->
/// Option<String>` is one (it allocates a key per request); implement the trait to borrow the
/// key from the request instead, as `ByAuthority` does (with the `http`
/// feature).
pub trait KeyFor<Request> {
    /// The key of `request`, if it has one.
    fn key<'r>(&self, request: &'r Request) -> Option<Cow<'r, str>>;
}

impl<F, Request> KeyFor<Request> for F
where
    F: Fn(&Request) -> Option<String>,
{
    fn key<'r>(&self, request: &'r Request) -> Option<Cow<'r, str>> {
        self(request).map(Cow::Owned)
    }
}

/// The default key of an HTTP request: the host and port it is for, lowercased.
///
/// Taken from the URI's authority (what a client's request carries), or else from the `Host`
/// header (what a server receives), without any `user:password@` part, so credentials never
/// become a breaker's name or a metrics label. A request with neither, or with a `Host` header
/// that is not a valid authority (not ASCII, a space, an empty value), has no key. Keys longer
/// than [`MAX_KEY_LEN`](super::MAX_KEY_LEN) go to the no-key breaker too.
///
/// The port is kept as written: `example.com` and `example.com:443` are two keys.
#[cfg(feature = "http")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ByAuthority;

#[cfg(feature = "http")]
impl<B> KeyFor<http::Request<B>> for ByAuthority {
    #[inline]
    fn key<'r>(&self, request: &'r http::Request<B>) -> Option<Cow<'r, str>> {
        match request.uri().authority() {
            Some(authority) => host_key(authority.as_str()),
            None => host_key(host_header(request.headers())?),
        }
    }
}

/// A client stack that takes bare URIs (`hyper_util`'s `Client` as a `Service<Uri>`) is keyed
/// by their authority the same way.
#[cfg(feature = "http")]
impl KeyFor<http::Uri> for ByAuthority {
    #[inline]
    fn key<'r>(&self, uri: &'r http::Uri) -> Option<Cow<'r, str>> {
        host_key(uri.authority()?.as_str())
    }
}

/// An authority as a key: without credentials, lowercased, not empty nor too long.
#[cfg(feature = "http")]
#[inline]
fn host_key(authority: &str) -> Option<Cow<'_, str>> {
    if authority.is_empty() || authority.len() > super::MAX_KEY_LEN {
        return host_key_rewritten(authority);
    }
    // `@` and `A` to `Z` are next to each other in ASCII: one range test per byte finds both
    // credentials and capitals, and most authorities have neither.
    if authority.bytes().any(|byte| (b'@'..=b'Z').contains(&byte)) {
        return host_key_rewritten(authority);
    }
    Some(Cow::Borrowed(authority))
}

/// [`host_key`] for an authority with credentials or capitals (or of a length to refuse).
#[cfg(feature = "http")]
#[cold]
fn host_key_rewritten(authority: &str) -> Option<Cow<'_, str>> {
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if host.is_empty() || host.len() > super::MAX_KEY_LEN {
        return None;
    }
    Some(if host.bytes().any(|byte| byte.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    })
}

/// The `Host` header, if it is one valid authority (checked by `http`'s own parser).
#[cfg(feature = "http")]
#[cold]
fn host_header(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::HOST)?;
    if value.len() > super::MAX_KEY_LEN {
        return None;
    }
    http::uri::Authority::try_from(value.as_bytes()).ok()?;
    value.to_str().ok()
}
