//! For tests (feature `testing`): a real S3-protocol server (s3s-fs: the S3 protocol over a
//! local directory) on loopback, with one access key whose secret it checks.

use std::net::SocketAddr;
use std::path::Path;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;

/// The access key the test server knows.
pub const KEY: &str = "meshplane-test";
/// Its secret.
pub const SECRET: &str = "a-secret-only-this-test-knows";

/// Serves the buckets under `root` (each directory a bucket) until the runtime ends.
pub async fn start_s3(root: &Path) -> SocketAddr {
    let mut builder = S3ServiceBuilder::new(s3s_fs::FileSystem::new(root).expect("an S3 root directory"));
    builder.set_auth(SimpleAuth::from_single(KEY, SECRET));
    let service = builder.build();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move {
        let http = Builder::new(TokioExecutor::new());
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(http.serve_connection(TokioIo::new(socket), service.clone()).into_owned());
        }
    });
    addr
}
