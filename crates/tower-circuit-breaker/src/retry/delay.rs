//! The wait before a retry.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;

pin_project! {
    /// The wait before a retry, returned by [`RetryPolicy`](super::RetryPolicy)'s
    /// [`Policy::retry`](tower::retry::Policy::retry): a [`tokio::time::sleep`], so paused time
    /// in tests drives it.
    pub struct RetryDelay {
        #[pin]
        sleep: tokio::time::Sleep,
    }
}

impl RetryDelay {
    /// A wait of `delay` from now. A delay too long to add to the clock ends in the far future
    /// (as `tokio::time::sleep` does), never panics.
    pub(super) fn after(delay: Duration) -> Self {
        Self {
            sleep: tokio::time::sleep(delay),
        }
    }

    /// When the wait ends.
    pub fn deadline(&self) -> tokio::time::Instant {
        self.sleep.deadline()
    }
}

impl Future for RetryDelay {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.project().sleep.poll(cx)
    }
}

impl fmt::Debug for RetryDelay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryDelay")
            .field("deadline", &self.sleep.deadline())
            .finish()
    }
}
