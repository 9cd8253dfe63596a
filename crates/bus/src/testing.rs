//! Test support: a TCP proxy in front of the RabbitMQ broker at
//! 127.0.0.1:5672 that a test owns, so it can cut every connection through
//! it and play a broker restart without touching the machine's shared
//! broker (the processes under test are given [`BrokerProxy::url`]).
#![allow(clippy::expect_used)]
use std::sync::Arc;

/// A TCP proxy to RabbitMQ that can play a broker restart: `down()` cuts
/// every proxied connection and refuses new ones, `up()` accepts again on
/// the same port.
pub struct BrokerProxy {
    port: u16,
    accept: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    conns: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl BrokerProxy {
    pub async fn start() -> BrokerProxy {
        let listener = Self::listen(0);
        let port = listener.local_addr().expect("test proxy").port();
        let proxy = BrokerProxy {
            port,
            accept: std::sync::Mutex::new(None),
            conns: Arc::default(),
        };
        proxy.serve(listener);
        proxy
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    fn listen(port: u16) -> tokio::net::TcpListener {
        let sock = tokio::net::TcpSocket::new_v4().expect("test proxy");
        sock.set_reuseaddr(true).expect("test proxy");
        sock.bind(([127, 0, 0, 1], port).into())
            .expect("test proxy");
        sock.listen(64).expect("test proxy")
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let conns = self.conns.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(upstream) = tokio::net::TcpStream::connect(("127.0.0.1", 5672)).await else {
                    continue;
                };
                let pipe = tokio::spawn(async move {
                    tokio::select! {
                        _ = pump(&client, &upstream) => {}
                        _ = pump(&upstream, &client) => {}
                    }
                });
                conns.lock().expect("test proxy").push(pipe);
            }
        });
        *self.accept.lock().expect("test proxy") = Some(task);
    }

    /// The "broker" goes away: live connections are cut, new ones refused.
    pub async fn down(&self) {
        if let Some(t) = self.accept.lock().expect("test proxy").take() {
            t.abort();
        }
        let conns: Vec<_> = self.conns.lock().expect("test proxy").drain(..).collect();
        for c in conns {
            c.abort();
            let _ = c.await; // the sockets are closed once the task is gone
        }
    }

    /// The "broker" is back on the same port.
    pub fn up(&self) {
        self.serve(Self::listen(self.port));
    }
}

/// Copies bytes one way until either side closes (no `io-util` needed).
async fn pump(from: &tokio::net::TcpStream, to: &tokio::net::TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if from.readable().await.is_err() {
            return;
        }
        let n = match from.try_read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return,
        };
        let mut done = 0;
        while done < n {
            if to.writable().await.is_err() {
                return;
            }
            match to.try_write(&buf[done..n]) {
                Ok(k) => done += k,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    }
}
