//! The last check before a write leaves the process: the effector's client refuses a mutating
//! request while this process holds no valid lease term. The dispatcher checks the term before
//! each attempt, but a process paused (SIGSTOP, a stalled node) between that check and the send
//! wrote after the standby had taken over: the chaos suite's split-brain scenario caught one
//! status patch doing so. Checked here, the window is the hop from this check to the socket.

use futures::future::BoxFuture;
use http::{Method, Request, Response};
use kube::client::Body;

use crate::leader::{self, Leadership};

#[derive(Clone)]
struct Fenced {
    inner: kube::Client,
    leadership: Leadership,
}

impl tower::Service<Request<Body>> for Fenced {
    type Response = Response<Body>;
    type Error = kube::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, kube::Error>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let mutating = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
        let (client, leadership) = (self.inner.clone(), self.leadership.clone());
        // Checked when the request is about to be sent, not when it was built.
        Box::pin(async move {
            if mutating && leader::current(&leadership).is_none() {
                return Err(kube::Error::Service(
                    "not sent: this process's lease term ended before the write left".into(),
                ));
            }
            client.send(req).await
        })
    }
}

/// `inner`, refusing writes outside a valid term of `leadership`.
pub fn client(inner: kube::Client, leadership: Leadership) -> kube::Client {
    let ns = inner.default_namespace().to_string();
    kube::Client::new(Fenced { inner, leadership }, ns)
}
