//! The request id (`x-request-id`) that started a piece of work, followed through the
//! jobs it leads to, so an operator can grep one id from the HTTP request to the postback.
//!
//! The API runs each request inside [`scope`]; [`crate::queue::Queues::enqueue`] writes
//! the id in scope into the job's data (`request_id`, next to the job's own fields, which
//! ignore it); the worker runtime reads it back, puts it on the job's log span and runs the
//! handler inside [`scope`] again, so the jobs that job enqueues carry it too: webhook →
//! inbound → flush → AI → postback or send. The accept path records it on the message.
//! Work the sweeper re-derives has none: it was not started by a request.

tokio::task_local! {
    static REQUEST_ID: String;
}

/// Runs `f` with `id` as the request id of everything it does.
pub async fn scope<F: std::future::Future>(id: String, f: F) -> F::Output {
    REQUEST_ID.scope(id, f).await
}

/// The request id in scope, if any.
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// The key a job's data carries it under.
pub const FIELD: &str = "request_id";
