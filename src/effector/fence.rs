//! The last check before a write leaves the process: the effector's client refuses a mutating
//! request while this process holds no valid lease term. The dispatcher checks the term before
//! each attempt, but a process paused (SIGSTOP, a stalled node) between that check and the send
//! wrote after the standby had taken over: the chaos suite's split-brain scenario caught one
//! status patch doing so. Checked here, the window is the hop from this check to the socket.
//! While the server is unreachable, requests first wait their turn (`outage`), and the term is
//! checked after that wait.

use futures::future::BoxFuture;
use http::{Method, Request, Response};
use kube::client::Body;

use std::sync::Arc;

use super::outage::Outage;
use crate::leader::{self, Leadership};

#[derive(Clone)]
struct Fenced {
    inner: kube::Client,
    leadership: Leadership,
    outage: Arc<Outage>,
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
        let (client, leadership, outage) = (self.inner.clone(), self.leadership.clone(), self.outage.clone());
        // Checked when the request is about to be sent, not when it was built.
        Box::pin(async move {
            let probe = outage.admit().await;
            if mutating && leader::current(&leadership).is_none() {
                return Err(kube::Error::Service(
                    "not sent: this process's lease term ended before the write left".into(),
                ));
            }
            // `send` hands back every HTTP response, error statuses included: an error here
            // means no response came.
            let sent = client.send(req).await;
            outage.report(sent.is_ok(), probe);
            sent
        })
    }
}

/// `inner`, refusing writes outside a valid term of `leadership`, and holding requests back
/// while `outage` says the server is unreachable.
pub fn client(inner: kube::Client, leadership: Leadership, outage: Arc<Outage>) -> kube::Client {
    let ns = inner.default_namespace().to_string();
    kube::Client::new(Fenced { inner, leadership, outage }, ns)
}
