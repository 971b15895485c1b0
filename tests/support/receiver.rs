//! A control-plane stand-in: an HTTP server that keeps every event batch POSTed to it, and can
//! go down (port closed, connections dropped) and come back on the same address.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

pub type Got = Arc<Mutex<Vec<Value>>>;
pub type Posts = Arc<Mutex<u64>>;

pub struct Receiver {
    pub addr: SocketAddr,
    pub got: Got,
    pub posts: Posts,
    down: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn serve(stream: TcpStream, got: Got, posts: Posts, down: Arc<AtomicBool>) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut r = BufReader::new(stream.try_clone().unwrap());
    let mut w = stream;
    loop {
        let mut len = 0usize;
        let mut line = String::new();
        let mut first = true;
        loop {
            line.clear();
            match r.read_line(&mut line) {
                Ok(0) => return,
                Ok(_) => {}
                Err(_) if down.load(Ordering::SeqCst) => return,
                Err(_) if first => continue,
                Err(_) => return,
            }
            first = false;
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() || down.load(Ordering::SeqCst) {
            return;
        }
        let v: Value = serde_json::from_slice(&body).expect("a JSON batch");
        assert_eq!(v["schema"], "vworkspace.events/v1");
        got.lock().unwrap().extend(v["events"].as_array().cloned().unwrap_or_default());
        *posts.lock().unwrap() += 1;
        if w.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_err() {
            return;
        }
    }
}

impl Receiver {
    pub fn start(addr: SocketAddr, got: Got, posts: Posts) -> Self {
        let listener = TcpListener::bind(addr).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let down = Arc::new(AtomicBool::new(false));
        let (g, p, d) = (got.clone(), posts.clone(), down.clone());
        let thread = std::thread::spawn(move || {
            while !d.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        let (g, p, d) = (g.clone(), p.clone(), d.clone());
                        std::thread::spawn(move || serve(s, g, p, d));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Self { addr, got, posts, down, thread: Some(thread) }
    }

    /// Unreachable from now on: the port is closed and open connections are dropped.
    pub fn stop(mut self) -> (SocketAddr, Got, Posts) {
        self.down.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        std::thread::sleep(Duration::from_millis(300));
        (self.addr, self.got.clone(), self.posts.clone())
    }

    /// Terminal events by Operation name, deduplicated by event ID.
    pub fn terminal(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for e in self.got.lock().unwrap().iter().filter(|e| e["terminal"] == true) {
            let name = e["operation"]["name"].as_str().unwrap().to_string();
            out.entry(name).or_default().insert(e["id"].as_str().unwrap().to_string());
        }
        out
    }
}
